"""The order and book facts of one order, computed by the engine (never supplied by a caller).

Each fact is in the catalogue with its unit and range. A fact that cannot be computed (no
reference price for the symbol, a held symbol without a price, no equity, no start-of-day
mark) is left out, and the order policy fails closed on it, naming it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.execution.activity import LOOK_BACK, EquityMarks, ExecutionLog
from engine.execution.gate import OrderIntent

_LOOK_BACK_S = LOOK_BACK.total_seconds()


@dataclass(frozen=True)
class BookView:
    """The book as the order finds it: cash, positions and the reference prices of the
    latest snapshots."""

    cash: float
    positions: Mapping[str, int]
    prices: Mapping[str, float]

    def equity(self) -> float | None:
        """Cash plus every position at its reference price; None when a held symbol has no
        usable price or the result is not a positive, finite amount."""
        total = self.cash
        for sym, n in self.positions.items():
            p = _price(self.prices.get(sym))
            if p is None:
                return None
            total += n * p
        return total if math.isfinite(total) and total > 0 else None


def _price(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    v = float(value)
    return v if math.isfinite(v) and v > 0 else None


def order_facts(order: OrderIntent, book: BookView, log: ExecutionLog, marks: EquityMarks,
                now: datetime) -> dict[str, Any]:
    """Every order and book fact that can be computed for `order` at `now`."""
    recent = log.recent(order.symbol, order.side, order.shares, now)
    since = recent.seconds_since_same
    facts: dict[str, Any] = {
        "order_shares": order.shares,
        "order_notional": order.notional,
        "order_opens": order.opens,
        # This order counts: the limit is on messages sent, and this would be one more.
        "orders_last_minute": recent.sent_last_minute + 1,
        "orders_last_second": recent.sent_last_second + 1,
        "fills_same_symbol_last_minute": recent.fills_last_minute,
        "duplicate_order_seconds": _LOOK_BACK_S if since is None else min(since, _LOOK_BACK_S),
    }
    reference = _price(book.prices.get(order.symbol))
    if reference is not None:
        facts["price_deviation"] = abs(order.price - reference) / reference
    equity = book.equity()
    if equity is None:
        return facts
    facts["order_notional_pct_equity"] = 100.0 * order.notional / equity
    held = book.positions.get(order.symbol, 0)
    after = held + order.shares if order.opens else held - order.shares
    if reference is not None:
        facts["position_weight_after"] = abs(after) * reference / equity
        others = sum(abs(n) * float(book.prices[s]) for s, n in book.positions.items()
                     if s != order.symbol)
        facts["gross_exposure_after"] = (others + abs(after) * reference) / equity
    start = marks.start_of_day(now)
    if start is not None and start > 0:
        facts["daily_pnl_pct"] = max(-100.0, 100.0 * (equity - start) / start)
    peak = marks.peak
    if peak is not None and peak > 0:
        facts["drawdown_from_peak"] = min(1.0, max(0.0, (peak - equity) / peak))
    return facts
