"""Which orders wait for a person: the ApprovalPolicy's mode and rules, in durable-rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.policy.duration import parse_duration
from engine.policy.model import PolicySet
from engine.rules.compiled_policy import CompiledPolicy

DEFAULT_TTL_SECONDS = 15 * 60
#: How far (a fraction of the approved price) the price may move between an approval and the
#: send; beyond it the person approved a different trade.
DEFAULT_PRICE_TOLERANCE = 0.01
MODES = ("autonomous", "semi_autonomous", "manual")


@dataclass(frozen=True)
class ApprovalNeed:
    required: bool
    rule: str | None
    source: str | None
    fired: tuple[str, ...] = ()
    #: Distinct people who must approve: the most any fired rule asks for.
    approvers: int = 1


class ApprovalEvaluator:
    """The approval policy of a set; without one, trading is autonomous (the rails still
    apply to every order)."""

    def __init__(self, policy_set: PolicySet) -> None:
        policies = policy_set.of_kind("ApprovalPolicy")
        if len(policies) > 1:
            raise ValueError("a policy set may hold one ApprovalPolicy, found "
                             + ", ".join(p.name for p in policies))
        self.policy = policies[0] if policies else None
        self.mode = str(self.policy.spec.get("mode", "autonomous")) if self.policy else \
            "autonomous"
        ttl = self.policy.spec.get("ttl") if self.policy else None
        self.ttl_seconds = (parse_duration(str(ttl)).total_seconds() if ttl
                            else DEFAULT_TTL_SECONDS)
        tolerance = self.policy.spec.get("price_tolerance") if self.policy else None
        self.price_tolerance = (float(tolerance) if tolerance is not None
                                else DEFAULT_PRICE_TOLERANCE)
        self._compiled = CompiledPolicy(self.policy) if self.policy else None
        spec = self.policy.spec if self.policy else {}
        self.default_approvers = int(spec.get("approvers", 1))
        self._approvers = {str(r["id"]): int(r.get("approvers", self.default_approvers))
                           for r in spec.get("rules", ())}

    def need(self, order_facts: dict[str, Any]) -> ApprovalNeed:
        """Does this order (facts: order_notional, order_opens, symbol_held, safety_action)
        wait for a person? A fact that cannot be read requires approval (fail closed)."""
        if self.mode == "autonomous" or self._compiled is None:
            return ApprovalNeed(False, None, None)
        source = self.policy.path if self.policy else None
        if self.mode == "manual":
            return ApprovalNeed(True, "mode-manual", source, (), self.default_approvers)
        outcome = self._compiled.evaluate(order_facts)
        fired = tuple(r.id for r in outcome.fired)
        if outcome.problems:
            # A fact that cannot be read: as many people as the strictest rule asks for.
            most = max([self.default_approvers, *self._approvers.values()])
            return ApprovalNeed(True, outcome.problems[0].rule_name,
                                outcome.deciding_source, fired, most)
        if outcome.fired:
            return ApprovalNeed(True, outcome.fired[0].id, outcome.fired[0].source, fired,
                                max(self._approvers.get(r, self.default_approvers)
                                    for r in fired))
        return ApprovalNeed(False, None, None)

    def close(self) -> None:
        if self._compiled is not None:
            self._compiled.close()
