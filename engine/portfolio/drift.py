"""How far a book has drifted from its targets: the facts the rebalance-trigger rules read.

Drift is measured over the symbols that have a target. A held symbol without a target is
one the forecasts say nothing about; the planner never trades it, so it does not count as
drift either (otherwise a `hold` result would trigger rebalances that cannot trade).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from engine.portfolio.book import CASH, Book, check_symbol, parse_utc
from engine.portfolio.config import finite_real

#: Relative drift of a held symbol whose target is 0: infinite in principle, capped so the
#: fact stays a finite number that any relative band fires on.
RELATIVE_DRIFT_CAP = 1e6
#: days_since_rebalance for a book never rebalanced: a hundred years, beyond any rule's limit.
NEVER_REBALANCED_DAYS = 36500


def usable_price(prices: Mapping[str, object], symbol: str) -> float | None:
    """The symbol's price when it is a finite number above zero, else None."""
    x = finite_real(prices.get(symbol))
    return x if x is not None and x > 0 else None


def check_targets(targets: Mapping[str, object]) -> dict[str, float]:
    """Targets as plain floats sorted by symbol; each must be a finite fraction in [0, 1]."""
    clean: dict[str, float] = {}
    for symbol, value in targets.items():
        try:
            name = check_symbol(symbol)
        except ValueError as exc:
            raise ValueError(f"targets: {exc}") from None
        x = finite_real(value)
        if x is None or not 0.0 <= x <= 1.0:
            raise ValueError(f"target for {name} must be a fraction in [0, 1], got {value!r}")
        clean[name] = x
    return dict(sorted(clean.items()))


def equity(book: Book, prices: Mapping[str, object]) -> float:
    """Cash plus the value of every position; every held symbol needs a usable price."""
    unpriced = [s for s, n in book.positions.items() if n > 0 and usable_price(prices, s) is None]
    if unpriced:
        shown = ", ".join(f"{s}={prices.get(s)!r}" for s in unpriced)
        raise ValueError(f"held symbol(s) without a usable price: {shown}; equity is unknown")
    held = (n * (usable_price(prices, s) or 0.0) for s, n in book.positions.items() if n > 0)
    return math.fsum([book.cash, *held])


def current_weights(book: Book, prices: Mapping[str, object]) -> dict[str, float]:
    """Each position's share of equity, by symbol, plus `CASH`; they sum to 1."""
    total = equity(book, prices)
    if total <= 0:
        raise ValueError("the book has no equity (no cash and no position): weights are undefined")
    weights = {
        s: n * (usable_price(prices, s) or 0.0) / total for s, n in book.positions.items() if n > 0
    }
    weights[CASH] = book.cash / total
    return weights


def weight_drift(weights: Mapping[str, float], targets: Mapping[str, float]) -> dict[str, float]:
    """|weight - target| for every symbol with a target."""
    return {s: abs(weights.get(s, 0.0) - t) for s, t in sorted(targets.items())}


def relative_drift(weights: Mapping[str, float], targets: Mapping[str, float]) -> dict[str, float]:
    """|weight - target| / target for every symbol with a target.

    A target of 0 gives RELATIVE_DRIFT_CAP when the symbol is held and 0 when it is not.
    """
    out: dict[str, float] = {}
    for s, t in sorted(targets.items()):
        w = weights.get(s, 0.0)
        if t > 0:
            out[s] = min(abs(w - t) / t, RELATIVE_DRIFT_CAP)
        else:
            out[s] = RELATIVE_DRIFT_CAP if w > 0 else 0.0
    return out


def days_since_rebalance(book: Book, now_ts: str) -> int | None:
    """Whole days from the last rebalance to `now_ts`; None when there was none."""
    now = parse_utc(now_ts, "now_ts")
    if book.last_rebalance is None:
        return None
    last = parse_utc(book.last_rebalance, "last_rebalance")
    if now < last:
        raise ValueError(f"now_ts {now_ts} is before last_rebalance {book.last_rebalance}")
    return (now - last).days


def book_empty(book: Book) -> bool:
    """True when the book holds no shares of anything (cash alone)."""
    return not any(n > 0 for n in book.positions.values())


def trigger_facts(
    book: Book, prices: Mapping[str, object], targets: Mapping[str, float], now_ts: str
) -> dict[str, float | int | bool]:
    """The derived facts weight_drift, relative_drift, days_since_rebalance and book_empty.

    Raises ValueError when they cannot be known (a held symbol without a price, no equity,
    a bad target or time), so a caller never reads a guessed fact.
    """
    clean = check_targets(targets)
    weights = current_weights(book, prices)
    days = days_since_rebalance(book, now_ts)
    return {
        "weight_drift": max(weight_drift(weights, clean).values(), default=0.0),
        "relative_drift": max(relative_drift(weights, clean).values(), default=0.0),
        "days_since_rebalance": NEVER_REBALANCED_DAYS if days is None else days,
        "book_empty": book_empty(book),
    }
