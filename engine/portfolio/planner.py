"""Trade plans: whole-lot orders that move a book toward its targets within hard limits.

What every plan guarantees, for any input:
- shares are whole multiples of the lot size and each line is worth at least the minimum trade;
- no line sells more than is held; sells come before buys, each side sorted by symbol;
- buys never take cash below `cash_buffer * equity`, nor gross exposure above `max_gross`
  (the plan never spends cash it does not have); when cash is short, buys are scaled down in
  proportion, then whole lots are handed out in symbol order;
- a held symbol without a usable price is never traded, and while one exists no buy is made:
  equity and gross exposure are then unknown, and only selling cannot overshoot them;
- a held symbol without a target is never traded: only an explicit target of 0 sells it out;
- every symbol with a target and a price is moved to its target, rounded toward less
  exposure (buys down, sells up to whole lots), so it ends within one lot of the target
  unless the minimum trade or the budget prevents it; any symbol the plan leaves more than
  `band` from its target is reported in `outside_band`, with why.

A plan is made once a rebalance rule has fired, so it moves every position to its target,
not only those outside `band`: a no-trade band would leave alone exactly the small
positions a relative-drift rule fires on (target 0.10 at weight 0.13 is inside 0.05).

Weights are fractions of the equity the plan can value: cash plus positions with a price.
Trades happen at the given prices, so equity is the same before and after the plan.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from engine.portfolio.book import CASH, Book, show
from engine.portfolio.config import ConstructionConfig, SizingConfig, finite_real
from engine.portfolio.drift import check_targets, usable_price

Side = Literal["BUY", "SELL"]
SIDES: tuple[str, ...] = ("SELL", "BUY")

# Float noise in share arithmetic must not round a whole lot away (or into existence).
_SHARE_EPS = 1e-9
# Float noise in a weight must not put a symbol that sits on the band's edge outside it.
_WEIGHT_EPS = 1e-9


@dataclass(frozen=True)
class PlanLine:
    """One order: `shares` of `symbol` at `price`, worth `notional`, and why."""

    symbol: str
    side: Side
    shares: int
    price: float
    notional: float
    reason: str

    def __post_init__(self) -> None:
        who = f"plan line {self.symbol}"
        if self.side not in SIDES:
            raise ValueError(f"{who}: side must be BUY or SELL, got {self.side!r}")
        if isinstance(self.shares, bool) or not isinstance(self.shares, int) or self.shares <= 0:
            raise ValueError(f"{who}: shares must be a whole number > 0, got {self.shares!r}")
        price = finite_real(self.price)
        if price is None or price <= 0:
            raise ValueError(f"{who}: price must be a finite number > 0, got {self.price!r}")
        notional = finite_real(self.notional)
        if notional is None or notional < 0:
            raise ValueError(f"{who}: notional must be finite and >= 0, got {self.notional!r}")


@dataclass(frozen=True)
class PostTrade:
    """The book as the plan leaves it, valued at the plan's prices."""

    cash: float
    equity: float
    #: Positions' value over equity.
    gross: float
    #: By symbol (positions left with a price) plus `CASH`; empty when equity is 0.
    weights: Mapping[str, float]


@dataclass(frozen=True)
class Plan:
    """The orders, the book they leave, and every symbol the plan could not bring to target.

    `skipped`: symbols the plan would not trade, with why (held without a price, held
    without a target, no price to buy at, buys withheld). `limited`: symbols whose buy the
    cash buffer or gross cap cut, in part (they have a line) or wholly (they have none).
    `outside_band`: symbols left more than `band` from their target, with why.
    """

    lines: tuple[PlanLine, ...]
    post_trade: PostTrade
    skipped: Mapping[str, str]
    limited: Mapping[str, str]
    outside_band: Mapping[str, str]


@dataclass(frozen=True)
class _Want:
    symbol: str
    price: float
    lots: int
    reason: str


def plan_trades(
    book: Book,
    prices: Mapping[str, object],
    targets: Mapping[str, float],
    sizing: SizingConfig,
    construction: ConstructionConfig,
    *,
    band: float = 0.05,
) -> Plan:
    """Orders that move `book` toward `targets` (weights by symbol), deterministically.

    `band` is the absolute tolerance the plan answers for: every symbol it leaves further
    from its target is listed in `outside_band`. Empty `targets` (a `hold` result) give an
    empty plan.
    """
    clean = check_targets(targets)
    for symbol, t in clean.items():
        if t > construction.max_position:
            raise ValueError(
                f"target for {symbol} is {t!r}, above max_position {construction.max_position!r}"
            )
    band_x = finite_real(band)
    if band_x is None or not 0.0 <= band_x < 1.0:
        raise ValueError(f"band must be a fraction in [0, 1), got {band!r}")

    held = {s: n for s, n in book.positions.items() if n > 0}
    quotes = {s: usable_price(prices, s) for s in sorted(held.keys() | clean.keys())}
    priced = {s: p for s, p in quotes.items() if p is not None}
    unpriced_held = sorted(s for s in held if s not in priced)
    equity = math.fsum([book.cash, *(n * priced[s] for s, n in held.items() if s in priced)])

    skipped: dict[str, str] = {}
    for s in unpriced_held:
        skipped[s] = f"held without a usable price ({show(prices.get(s))}); not traded"
    for s in held:
        if s not in clean and s in priced:
            skipped[s] = "held without a target; not traded"
    for s, t in clean.items():
        if s not in priced and s not in held and t > 0:
            skipped[s] = f"no usable price ({show(prices.get(s))}); cannot buy"

    sells: list[PlanLine] = []
    wants: list[_Want] = []
    unsized: dict[str, str] = {}
    if equity > 0:
        tradable = {s: t for s, t in clean.items() if s in priced}
        sells, wants, unsized = _size(tradable, held, priced, equity, sizing)

    buys: list[PlanLine] = []
    limited: dict[str, str] = {}
    if wants and unpriced_held:
        why = f"equity is unknown while {', '.join(unpriced_held)} has no usable price"
        skipped |= {w.symbol: f"buy withheld: {why}" for w in wants}
    elif wants:
        cash_after_sells = math.fsum([book.cash, *(line.notional for line in sells)])
        buys, limited = _fund(wants, cash_after_sells, equity, sizing, construction)

    lines = tuple(sells + buys)
    post = _post_trade(book, priced, held, lines, equity)
    why_not = unsized | skipped | limited
    default = f"rounded to whole lots of {sizing.lot_size}" if equity > 0 else "no equity"
    outside = {
        s: why_not.get(s, default) for s in _outside(clean, post, band_x, set(unpriced_held))
    }
    return Plan(
        lines=lines,
        post_trade=post,
        skipped=MappingProxyType(dict(sorted(skipped.items()))),
        limited=MappingProxyType(dict(sorted(limited.items()))),
        outside_band=MappingProxyType(dict(sorted(outside.items()))),
    )


def _outside(
    targets: Mapping[str, float], post: PostTrade, band: float, unpriced: set[str]
) -> list[str]:
    """Symbols further than `band` from their target after the plan, or not measurable."""
    if post.equity <= 0:
        return [s for s, t in targets.items() if s in unpriced or t > band]
    return [
        s
        for s, t in targets.items()
        if s in unpriced or abs(post.weights.get(s, 0.0) - t) > band + _WEIGHT_EPS
    ]


def _size(
    targets: Mapping[str, float],
    held: Mapping[str, int],
    priced: Mapping[str, float],
    equity: float,
    sizing: SizingConfig,
) -> tuple[list[PlanLine], list[_Want], dict[str, str]]:
    """Sells, wanted buys (before any budget), and why a symbol off target has neither."""
    lot = sizing.lot_size
    min_notional = float(sizing.min_trade_notional)
    sells: list[PlanLine] = []
    wants: list[_Want] = []
    skipped: dict[str, str] = {}
    for s, target in targets.items():
        price, have = priced[s], held.get(s, 0)
        weight = have * price / equity
        why = f"weight {weight:.4f} to target {target:.4f}"
        ideal = target * equity / price - have  # signed shares to the exact target
        if abs(ideal) < _SHARE_EPS:
            continue
        if ideal < 0:
            lots = min(math.ceil(-ideal / lot - _SHARE_EPS), have // lot)
            if lots <= 0:
                skipped[s] = f"holding of {have} shares is less than one lot of {lot}"
            elif lots * lot * price < min_notional:
                skipped[s] = _below_min(lots * lot, price, min_notional)
            else:
                sells.append(PlanLine(s, "SELL", lots * lot, price, lots * lot * price, why))
        else:
            lots = math.floor(ideal / lot + _SHARE_EPS)
            if lots <= 0:
                skipped[s] = f"less than one lot of {lot} shares below target"
            elif lots * lot * price < min_notional:
                skipped[s] = _below_min(lots * lot, price, min_notional)
            else:
                wants.append(_Want(s, price, lots, why))
    return sells, wants, skipped


def _fund(
    wants: list[_Want],
    cash: float,
    equity: float,
    sizing: SizingConfig,
    construction: ConstructionConfig,
) -> tuple[list[PlanLine], dict[str, str]]:
    """Buy lines that leave `cash` at or above the floor that the cash buffer and the gross
    cap set, and the symbols whose buy that floor cut."""
    # Gross exposure is equity minus cash, so the gross cap is a cash floor too.
    floor_frac = max(construction.cash_buffer, 1.0 - construction.max_gross)
    binding = construction.cash_buffer >= 1.0 - construction.max_gross
    limit = "cash buffer" if binding else "gross cap"
    lot = sizing.lot_size
    granted = _allocate(wants, cash - floor_frac * equity, lot, float(sizing.min_trade_notional))
    buys: list[PlanLine] = []
    limited: dict[str, str] = {}
    for w in wants:
        got = granted[w.symbol]
        if got < w.lots:
            limited[w.symbol] = f"{limit}: bought {got * lot} of {w.lots * lot} shares"
        if got > 0:
            shares = got * lot
            reason = w.reason if got == w.lots else f"{w.reason}; cut by the {limit}"
            buys.append(PlanLine(w.symbol, "BUY", shares, w.price, shares * w.price, reason))
    return buys, limited


def _allocate(wants: list[_Want], budget: float, lot: int, min_notional: float) -> dict[str, int]:
    """Lots granted to each buy so their cost stays within `budget`.

    All of them when they fit. Otherwise each is scaled by the same fraction and rounded
    down, grants below the minimum trade are withdrawn, and what is left is handed out in
    symbol order, as many whole lots as each still wants and the rest can pay for.
    """
    cost = {w.symbol: lot * w.price for w in wants}
    granted = {w.symbol: w.lots for w in wants}

    def spent() -> float:
        return math.fsum(granted[s] * cost[s] for s in granted)

    if spent() <= budget:
        return granted
    fraction = max(budget, 0.0) / spent()
    for w in wants:
        lots = math.floor(w.lots * fraction)
        granted[w.symbol] = lots if lots * cost[w.symbol] >= min_notional else 0
    for w in wants:
        left = budget - spent()
        room = w.lots - granted[w.symbol]
        extra = min(room, math.floor(left / cost[w.symbol])) if left > 0 else 0
        if extra > 0 and (granted[w.symbol] > 0 or extra * cost[w.symbol] >= min_notional):
            granted[w.symbol] += extra
    # Float rounding can leave the total an ulp over budget: give lots back, last symbol first.
    for w in reversed(wants):
        while granted[w.symbol] > 0 and spent() > budget:
            granted[w.symbol] -= 1
        if granted[w.symbol] * cost[w.symbol] < min_notional:
            granted[w.symbol] = 0
    return granted


def _post_trade(
    book: Book,
    priced: Mapping[str, float],
    held: Mapping[str, int],
    lines: tuple[PlanLine, ...],
    equity: float,
) -> PostTrade:
    shares = {s: n for s, n in held.items() if s in priced}
    for line in lines:
        delta = line.shares if line.side == "BUY" else -line.shares
        shares[line.symbol] = shares.get(line.symbol, 0) + delta
    cash = math.fsum(
        [book.cash, *(line.notional if line.side == "SELL" else -line.notional for line in lines)]
    )
    values = {s: n * priced[s] for s, n in sorted(shares.items()) if n > 0}
    if equity <= 0:
        return PostTrade(cash=cash, equity=equity, gross=0.0, weights=MappingProxyType({}))
    weights = {s: v / equity for s, v in values.items()}
    weights[CASH] = cash / equity
    return PostTrade(
        cash=cash,
        equity=equity,
        gross=math.fsum(values.values()) / equity,
        weights=MappingProxyType(weights),
    )


def _below_min(shares: int, price: float, min_notional: float) -> str:
    return (
        f"trade of {shares} shares ({shares * price:.2f}) is below "
        f"min_trade_notional {min_notional:.2f}"
    )
