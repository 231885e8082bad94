"""Rule by rule, what a snapshot's facts say against each safety rule: every comparison with
its observed value, its threshold and how far it is from tripping. `fugger explain` prints it;
the service shows it beside each symbol's latest decision."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from engine.clock import Clock
from engine.decision import Decision
from engine.evaluator import SafetyEvaluator
from engine.policy.model import PolicySet, Scalar
from engine.rules.reference import Comparison, comparisons, holds


@dataclass(frozen=True)
class RuleCheck:
    rule: str
    policy: str
    action: str
    source: str
    matched: bool  # as the rule engine decided
    comparisons: tuple[Comparison, ...]
    #: The plain evaluation of the rule agrees with the rule engine (it always should).
    agrees: bool

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "policy": self.policy, "action": self.action,
                "source": self.source, "matched": self.matched,
                "comparisons": [
                    {"fact": c.leaf.fact, "op": c.leaf.op, "threshold": _jsonable(c.leaf.value),
                     "observed": c.observed, "result": c.result, "margin": c.margin}
                    for c in self.comparisons]}


def rule_checks(policy_set: PolicySet, fired: Collection[str],
                values: Mapping[str, Mapping[str, Scalar]]) -> list[RuleCheck]:
    """Each safety rule against the checked fact `values` of its policy; `fired`: the ids of
    the rules the engine fired."""
    out = []
    for policy in policy_set.of_kind("SafetyPolicy"):
        vals = values.get(policy.name, {})
        for r in policy.rules:
            matched = r.id in fired
            out.append(RuleCheck(r.id, policy.name, r.action, r.source, matched,
                                 tuple(comparisons(r.when, vals)),
                                 holds(r.when, vals) == matched))
    return out


def explain(evaluator: SafetyEvaluator, policy_set: PolicySet, snapshot: Mapping[str, Any],
            clock: Clock) -> tuple[Decision, list[RuleCheck]]:
    """Decide `snapshot` and check every rule against it."""
    d = evaluator.decide(snapshot, clock=clock)
    return d, rule_checks(policy_set, {f.rule for f in d.fired},
                          evaluator.checked_values(snapshot, clock=clock))


def _jsonable(v: object) -> object:
    return list(v) if isinstance(v, tuple) else v
