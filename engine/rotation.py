"""Portfolio rotation under a RotationPolicy: targets, the rebalance trigger, the plan.

The trigger rules read derived facts (weight_drift, relative_drift, days_since_rebalance,
book_empty) and are evaluated in durable-rules like every other rule. Facts that cannot be
derived (a held symbol without a price) fail closed: no rebalance, and the reason is named.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.policy.model import Policy, PolicySet
from engine.portfolio.book import Book
from engine.portfolio.config import ConstructionConfig, SizingConfig
from engine.portfolio.constructor import TargetResult, build_targets
from engine.portfolio.drift import (
    current_weights,
    relative_drift,
    trigger_facts,
    usable_price,
    weight_drift,
)
from engine.portfolio.planner import Plan, plan_trades
from engine.portfolio.triggers import RotationTriggers, Trigger

FORECAST_FACTS = ("price", "expected_return", "volatility", "frs")


@dataclass(frozen=True)
class RotationConfig:
    construction: ConstructionConfig
    sizing: SizingConfig
    band: float


def rotation_config(policy: Policy) -> RotationConfig:
    spec = policy.spec
    c = dict(spec.get("construction", {}))
    eligibility = c.pop("eligibility", {})
    construction = ConstructionConfig(**c, **eligibility)
    sizing = SizingConfig(**spec.get("sizing", {}))
    return RotationConfig(construction, sizing, float(spec.get("band", 0.05)))


@dataclass(frozen=True)
class Rotation:
    """Everything a rotation cycle decided, for display, the audit and the planner."""

    targets: TargetResult
    weights: Mapping[str, float]
    weight_drift: Mapping[str, float]
    relative_drift: Mapping[str, float]
    trigger: Trigger
    plan: Plan | None
    prices: Mapping[str, float | None] = field(default_factory=dict)


class RotationEvaluator:
    def __init__(self, policy_set: PolicySet) -> None:
        policies = policy_set.of_kind("RotationPolicy")
        if len(policies) != 1:
            raise ValueError("rotation needs exactly one RotationPolicy in the policy set, found "
                             f"{len(policies)}")
        self.policy = policies[0]
        self.config = rotation_config(self.policy)
        self._triggers = RotationTriggers(self.policy)

    def rotate(self, book: Book, snapshots: Sequence[Mapping[str, Any]], now_ts: str) -> Rotation:
        rows = forecast_rows(snapshots)
        prices = {str(r["symbol"]): usable_price(r, "price") for r in rows}
        targets = build_targets(rows, self.config.construction)
        weights: dict[str, float] = {}
        wd: dict[str, float] = {}
        rd: dict[str, float] = {}
        try:
            weights = current_weights(book, prices)
            if not targets.hold:
                wd = weight_drift(weights, targets.targets)
                rd = relative_drift(weights, targets.targets)
        except ValueError:
            pass
        trigger = self._trigger(book, prices, targets, now_ts)
        plan = None
        if trigger.triggered:
            plan = plan_trades(book, prices, targets.targets, self.config.sizing,
                               self.config.construction, band=self.config.band)
        return Rotation(targets, weights, wd, rd, trigger, plan, prices)

    def _trigger(self, book: Book, prices: Mapping[str, float | None], targets: TargetResult,
                 now_ts: str) -> Trigger:
        if targets.hold:
            return Trigger(False, None, None, (), {}, "no symbol qualifies; the book is held "
                                                       "as it is (on_no_eligible: hold)")
        try:
            facts = trigger_facts(book, prices, targets.targets, now_ts)
        except ValueError as e:
            return Trigger(False, "fact-invalid:rotation", self.policy.path, (), {},
                           f"rotation facts cannot be derived, nothing is traded: {e}",
                           failed_closed=True)
        return self._triggers.evaluate(facts)

    def close(self) -> None:
        self._triggers.close()


def forecast_rows(snapshots: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per symbol (the last snapshot of each), sorted by symbol, with plain values of
    the forecast facts; a value that is not a plain number stays as it is, for the
    constructor to refuse."""
    rows: dict[str, dict[str, Any]] = {}
    for s in snapshots:
        sym = s.get("symbol")
        if not isinstance(sym, str):
            continue
        row: dict[str, Any] = {"symbol": sym}
        for name in FORECAST_FACTS:
            v = s.get(name)
            row[name] = v.get("value") if isinstance(v, Mapping) else v
        rows[sym] = row
    return [rows[k] for k in sorted(rows)]


def snapshot_prices(snapshots: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The usable price of each symbol (finite, above zero, plain or dated); a symbol whose
    price is not usable is absent, never priced at a guess."""
    out: dict[str, float] = {}
    for row in forecast_rows(snapshots):
        price = usable_price(row, "price")
        if price is not None:
            out[str(row["symbol"])] = price
    return out
