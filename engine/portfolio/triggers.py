"""Rebalance triggers: the rules of a RotationPolicy over the facts derived from a book
(weight_drift, relative_drift, days_since_rebalance, book_empty), in durable-rules. Kept apart
from target construction so that testing a policy's triggers needs no pandas."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.policy.model import Policy
from engine.portfolio.drift import NEVER_REBALANCED_DAYS
from engine.rules.compiled_policy import CompiledPolicy
from engine.rules.reference import comparisons


@dataclass(frozen=True)
class Trigger:
    triggered: bool
    rule: str | None
    source: str | None
    fired: tuple[str, ...]
    facts: Mapping[str, Any]
    reason: str
    #: A trigger fact could not be read: nothing is traded, whatever else fired.
    failed_closed: bool = False


class RotationTriggers:
    """The trigger rules of one RotationPolicy over the derived facts, in durable-rules."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._compiled = CompiledPolicy(policy)

    def evaluate(self, facts: Mapping[str, Any]) -> Trigger:
        outcome = self._compiled.evaluate(facts)
        fired = tuple(r.id for r in outcome.fired)
        if outcome.problems:
            p = outcome.problems[0]
            return Trigger(False, p.rule_name, outcome.deciding_source, fired, facts,
                           f"{p.detail}; nothing is traded", failed_closed=True)
        if outcome.fired:
            r = outcome.fired[0]
            return Trigger(True, r.id, r.source, fired, facts,
                           f"{r.description or r.id} ({self._observed(r.id, facts)})")
        return Trigger(False, None, None, (), facts, "every weight is inside its band")

    def _observed(self, rule_id: str, facts: Mapping[str, Any]) -> str:
        """The values the rule read, so its description is never taken for what happened:
        a calendar rule firing on a book with no rebalance on record says so."""
        rule = next(r for r in self.policy.rules if r.id == rule_id)
        shown = []
        for c in comparisons(rule.when, facts):
            value = c.observed
            if c.leaf.fact == "days_since_rebalance" and value == NEVER_REBALANCED_DAYS:
                shown.append("no rebalance on record")
            else:
                text = str(value).lower() if isinstance(value, bool) else str(value)
                shown.append(f"{c.leaf.fact} {text}")
        return ", ".join(dict.fromkeys(shown))

    def close(self) -> None:
        self._compiled.close()
