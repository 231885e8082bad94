"""What a paper account accepts and how it writes money: symbols, share counts, prices,
client ids, sides, starting cash and positions, fee settings, each checked with the reason a
refusal gives; money in integer cents, rounded half up."""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from engine.execution.broker import Side

SYMBOL_PATTERN = re.compile(r"[A-Z][A-Z0-9._-]{0,15}")
MAX_CLIENT_ID_LENGTH = 128
MAX_SHARES = 1_000_000_000
MAX_PRICE = 10_000_000.0
# Keeps every cents figure far inside SQLite's signed 64-bit integers.
MAX_CASH = 1e15
MAX_POSITION = 1_000_000_000_000

CENT = Decimal("0.01")
WHOLE = Decimal(1)


class RejectReason(StrEnum):
    """Stable codes that open every rejection `reason` (`"<code>: <detail>"`)."""

    INSUFFICIENT_CASH = "insufficient_cash"
    INSUFFICIENT_SHARES = "insufficient_shares"
    INVALID_SHARES = "invalid_shares"
    INVALID_PRICE = "invalid_price"
    UNKNOWN_SYMBOL = "unknown_symbol"
    ACCOUNT_LIMIT = "account_limit"


def check_shares(shares: object) -> tuple[int, str | None]:
    """The share count to record and, when it is not a positive whole number, why."""
    if isinstance(shares, bool) or not isinstance(shares, numbers.Integral):
        return 0, reason(
            RejectReason.INVALID_SHARES,
            f"shares must be a whole number, got {shares!r} ({type(shares).__name__})",
        )
    count = int(shares)
    if count <= 0:
        return count, reason(RejectReason.INVALID_SHARES, f"shares must be positive, got {count}")
    if count > MAX_SHARES:
        return 0, reason(
            RejectReason.INVALID_SHARES, f"shares {count} exceed the maximum {MAX_SHARES}"
        )
    return count, None


def check_price(price: object) -> tuple[float | None, str | None]:
    """The price as a float and, when it cannot be traded at, why."""
    if isinstance(price, bool) or not isinstance(price, numbers.Real | Decimal):
        return None, reason(
            RejectReason.INVALID_PRICE,
            f"price must be a number, got {price!r} ({type(price).__name__})",
        )
    value = float(price)
    if not math.isfinite(value) or value <= 0:
        # NaN would be stored as NULL by SQLite; keep the record honest.
        return (value if math.isfinite(value) else None), reason(
            RejectReason.INVALID_PRICE, f"price must be finite and positive, got {value}"
        )
    if value > MAX_PRICE:
        return value, reason(
            RejectReason.INVALID_PRICE, f"price {value} exceeds the maximum {MAX_PRICE}"
        )
    return value, None


def check_client_id(client_id: object) -> str:
    if not isinstance(client_id, str) or not client_id.strip():
        raise ValueError(f"client_id must be a non-empty string, got {client_id!r}")
    if len(client_id) > MAX_CLIENT_ID_LENGTH:
        raise ValueError(
            f"client_id must be at most {MAX_CLIENT_ID_LENGTH} characters, got {len(client_id)}"
        )
    return client_id


def check_side(side: object) -> Side:
    if isinstance(side, Side):
        return side
    if isinstance(side, str) and side in Side.__members__:
        return Side(side)
    raise ValueError(f"side must be BUY or SELL, got {side!r}")


def check_symbols(symbols: Iterable[str] | None) -> frozenset[str] | None:
    if symbols is None:
        return None
    if isinstance(symbols, str | bytes) or not isinstance(symbols, Iterable):
        raise ValueError(f"symbols must be a collection of symbols, got {symbols!r}")
    checked = set()
    for symbol in symbols:
        if not isinstance(symbol, str) or SYMBOL_PATTERN.fullmatch(symbol) is None:
            raise ValueError(
                f"symbols: {symbol!r} is not a valid symbol (expected {SYMBOL_PATTERN.pattern})"
            )
        checked.add(symbol)
    return frozenset(checked)


def check_positions(
    positions: Mapping[str, int] | None, symbols: frozenset[str] | None
) -> dict[str, int]:
    if positions is None:
        return {}
    if not isinstance(positions, Mapping):
        raise ValueError(f"positions must be a mapping of symbol to shares, got {positions!r}")
    holdings: dict[str, int] = {}
    for symbol, shares in positions.items():
        if not isinstance(symbol, str) or SYMBOL_PATTERN.fullmatch(symbol) is None:
            raise ValueError(f"positions: {symbol!r} is not a valid symbol")
        if symbols is not None and symbol not in symbols:
            raise ValueError(f"positions: {symbol} is not in the tradable symbols")
        if isinstance(shares, bool) or not isinstance(shares, numbers.Integral):
            raise ValueError(
                f"positions: shares of {symbol} must be a whole number, got {shares!r}"
            )
        if not 0 <= int(shares) <= MAX_SHARES:
            raise ValueError(
                f"positions: shares of {symbol} must be 0..{MAX_SHARES}, got {int(shares)}"
            )
        if int(shares) > 0:
            holdings[symbol] = int(shares)
    return holdings


def cash_to_cents(cash: object) -> int:
    if isinstance(cash, bool) or not isinstance(cash, numbers.Real | Decimal):
        raise ValueError(f"cash must be a number, got {cash!r}")
    value = float(cash)
    if not math.isfinite(value) or not 0 <= value <= MAX_CASH:
        raise ValueError(f"cash must be finite and within 0..{MAX_CASH:.0f}, got {value}")
    return int((to_decimal(value) * 100).quantize(WHOLE, ROUND_HALF_UP))


def setting(name: str, value: object, *, upper: float = math.inf) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, numbers.Real | Decimal):
        raise ValueError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or not 0 <= number < upper:
        bound = f"below {upper:g}" if math.isfinite(upper) else "finite"
        raise ValueError(f"{name} must be non-negative and {bound}, got {value!r}")
    return to_decimal(number)


def to_decimal(value: float) -> Decimal:
    # repr gives the shortest decimal that round-trips, so 0.1 stays 0.1.
    return Decimal(repr(float(value)))


def cents_to_float(cents: int) -> float:
    return float(Decimal(cents) / 100)


def money(cents: int) -> str:
    return f"{Decimal(cents) / 100:.2f}"


def reason(code: RejectReason, detail: str) -> str:
    return f"{code.value}: {detail}"


def utc_text(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError(f"clock must return an aware datetime, got naive {moment!r}")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
