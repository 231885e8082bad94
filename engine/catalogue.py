"""The fact catalogue: every fact a policy may name, with its type, unit, range and meaning.

One place for this rule of the domain. Policies are checked against it when they load and
snapshots are checked against it before any value reaches the rule engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from engine.actions import ACTION_NAMES
from engine.names import did_you_mean
from engine.names import nearest as _nearest

FactType = Literal["number", "integer", "boolean", "string"]


@dataclass(frozen=True)
class FactSpec:
    name: str
    type: FactType
    unit: str
    minimum: float | None
    maximum: float | None
    meaning: str
    #: What a value outside the range most likely means, e.g. a percentage written for a fraction.
    hint: str = ""
    #: The values a string fact may take; empty when any string is allowed.
    choices: tuple[str, ...] = ()

    def in_range(self, value: float) -> bool:
        if self.minimum is not None and value < self.minimum:
            return False
        return not (self.maximum is not None and value > self.maximum)

    def range_text(self) -> str:
        lo = "-inf" if self.minimum is None else _num(self.minimum)
        hi = "inf" if self.maximum is None else _num(self.maximum)
        return f"{lo}..{hi}"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


_FRACTION_HINT = "it is a fraction: write {fraction} for {value}%"

_SPECS: tuple[FactSpec, ...] = (
    FactSpec("drift_score", "number", "score", 0.0, 1.0,
             "Model drift: how far the forecaster's recent errors depart from its long-run errors.",
             _FRACTION_HINT),
    FactSpec("volatility", "number", "fraction per year", 0.0, 5.0,
             "Realised volatility, annualised, as a fraction (0.35 is 35%).",
             "volatility is an annualised fraction: {value} means {percent}%; "
             "write {fraction} for {value}%"),
    FactSpec("coherence", "number", "score", 0.0, 1.0,
             "Agreement between the assets' signals (1 all agree, 0 none).", _FRACTION_HINT),
    FactSpec("frs", "number", "score", 0.0, 1.0,
             "Forecast reliability score of the latest forecast.", _FRACTION_HINT),
    FactSpec("meta_reliability", "number", "score", 0.0, 1.0,
             "Reliability of the reliability scores: calibration of past FRS against outcomes.",
             _FRACTION_HINT),
    FactSpec("expected_return", "number", "fraction", -1.0, 10.0,
             "Forecast return over the forecast horizon, as a fraction."),
    FactSpec("price", "number", "currency per share", 0.0, None,
             "Last traded price of the symbol."),
    FactSpec("weight_drift", "number", "fraction", 0.0, 1.0,
             "Largest absolute gap between a position's weight and its target weight."),
    FactSpec("relative_drift", "number", "fraction", 0.0, None,
             "Largest gap between a position's weight and its target, relative to the target."),
    FactSpec("days_since_rebalance", "integer", "days", 0.0, None,
             "Calendar days since the last rebalance."),
    FactSpec("book_empty", "boolean", "flag", None, None,
             "True when the book holds no position yet."),
    FactSpec("order_notional", "number", "currency", 0.0, None,
             "Absolute value of an order: shares times price."),
    FactSpec("order_opens", "boolean", "flag", None, None,
             "True when the order opens or grows a position."),
    FactSpec("symbol_held", "boolean", "flag", None, None,
             "True when the book already holds the order's symbol."),
    FactSpec("safety_action", "string", "action", None, None,
             "The safety action in force for the order's symbol.", choices=ACTION_NAMES),
    # Order and book facts: computed by the engine for every order (engine/execution/
    # order_facts.py) from the order, the latest snapshot, the book and the execution log.
    FactSpec("order_shares", "integer", "shares", 0.0, None,
             "Shares of the order."),
    FactSpec("order_notional_pct_equity", "number", "percent of equity", 0.0, None,
             "The order's notional as a percentage of the book's equity (25 is 25%)."),
    FactSpec("price_deviation", "number", "fraction", 0.0, None,
             "How far the order's price is from the snapshot's reference price, as a "
             "fraction of the reference (0.05 is 5%).", _FRACTION_HINT),
    FactSpec("position_weight_after", "number", "fraction of equity", 0.0, None,
             "The symbol's position after the order, as a fraction of equity.",
             _FRACTION_HINT),
    FactSpec("gross_exposure_after", "number", "fraction of equity", 0.0, None,
             "Sum of every position's value after the order, as a fraction of equity "
             "(1 is fully invested, above 1 is leverage)."),
    FactSpec("orders_last_minute", "integer", "orders", 0.0, None,
             "Orders sent to the broker in the 60 seconds up to now, this one included."),
    FactSpec("orders_last_second", "integer", "orders", 0.0, None,
             "Orders sent to the broker in the second up to now, this one included."),
    FactSpec("fills_same_symbol_last_minute", "integer", "fills", 0.0, None,
             "Fills of the order's symbol in the 60 seconds before this order."),
    FactSpec("duplicate_order_seconds", "number", "seconds", 0.0, 86400.0,
             "Seconds since an order with the same symbol, side and shares was sent; 86400 "
             "(one day, the look-back) when there was none."),
    FactSpec("daily_pnl_pct", "number", "percent", -100.0, None,
             "Change of equity since the start of the day (the last mark before today, UTC), "
             "in percent (-3 is a 3% loss).",
             "daily_pnl_pct is a percentage: write -3 for a 3% loss"),
    FactSpec("drawdown_from_peak", "number", "fraction", 0.0, 1.0,
             "Fall of equity from its peak since trading was last resumed, as a fraction "
             "(0.15 is 15%).", _FRACTION_HINT),
)

CATALOGUE: dict[str, FactSpec] = {s.name: s for s in _SPECS}


def lookup(name: str) -> FactSpec | None:
    return CATALOGUE.get(name)


def nearest(name: str, n: int = 3) -> list[str]:
    """Known fact names closest to `name`, best first."""
    return _nearest(name, CATALOGUE, n)


def range_hint(spec: FactSpec, value: float) -> str:
    """A sentence that teaches what an out-of-range value most likely meant."""
    if not spec.hint:
        return ""
    fraction = value / 100
    return spec.hint.format(value=_num(value), percent=_num(value * 100), fraction=_num(fraction))


#: The keys of a snapshot besides its facts.
ENVELOPE_KEYS: tuple[str, ...] = ("ts", "symbol")


def unknown_keys(snapshot: object) -> list[str]:
    """The keys of a snapshot that are neither a fact of the catalogue nor its envelope: no
    rule can read them, so a misspelt fact shows here (and the fact it meant is missing)."""
    if not isinstance(snapshot, dict):
        return []
    return [str(k) for k in snapshot if k not in CATALOGUE and k not in ENVELOPE_KEYS]


def unknown_key_message(key: str) -> str:
    """'KEY' is not a fact ...; did you mean NEAREST?"""
    hint = did_you_mean(key, CATALOGUE)
    return (f"{key!r} is not a fact of the catalogue, so no rule reads it"
            + (f"; {hint}" if hint else " (fugger facts lists the facts)"))
