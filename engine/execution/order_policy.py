"""The pre-trade controls: every OrderPolicy of a set, compiled into durable-rules, judging one
order's facts. The most restrictive action across all policies wins (engine.actions); a fact
that is missing or invalid yields the policy's fail-closed action, named after the fact."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.actions import OrderAction, most_restrictive_order
from engine.policy.model import PolicySet, Rule, Scalar
from engine.rules.compiled_policy import CompiledPolicy

KIND = "OrderPolicy"


@dataclass(frozen=True)
class OrderJudgement:
    """What the order policies decided on one order, and why."""

    action: OrderAction
    #: The deciding rule id (or `fact-missing:NAME` ...); None when the order may be sent.
    rule: str | None
    policy: str | None
    source: str | None
    #: Every rule that fired, in policy order, and the fact problems that failed closed.
    fired: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    observed: Mapping[str, Scalar] | None = None

    @property
    def reason(self) -> str:
        if self.rule is None:
            return "the order policy allows it"
        if self.problems:
            return (f"{self.problems[0]}: the order policy cannot judge the order "
                    f"({self.rule}, fails closed to {self.action.value})")
        return f"order policy {self.policy}: {self.rule} ({self.action.value})"

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action.value, "rule": self.rule, "policy": self.policy,
                "source": self.source, "fired": list(self.fired),
                "problems": list(self.problems),
                "observed": dict(self.observed) if self.observed is not None else {}}


SEND = OrderJudgement(OrderAction.SEND, None, None, None)


class OrderPolicyEvaluator:
    """The order policies of a set; without one, every order passes to the approval step."""

    def __init__(self, policy_set: PolicySet) -> None:
        self._compiled = tuple(CompiledPolicy(p) for p in policy_set.of_kind(KIND))
        # Read once here: every order is judged, and an action's name is the same each time.
        self._actions = {r.id: OrderAction(r.action) for c in self._compiled
                         for r in c.policy.rules}
        self._fail_closed = tuple(OrderAction(c.policy.fail_closed) for c in self._compiled)

    @property
    def active(self) -> bool:
        return bool(self._compiled)

    @property
    def facts(self) -> tuple[str, ...]:
        """Every fact some order rule reads."""
        return tuple(dict.fromkeys(f for c in self._compiled for f in c.facts))

    def judge(self, facts: Mapping[str, Any]) -> OrderJudgement:
        if not self._compiled:
            return SEND
        # (action, rule id, policy, the rule or the source text, fact problems). A rule's
        # source is written out only for the deciding one: most fired rules are not asked.
        candidates: list[tuple[OrderAction, str, str, Rule | str | None, tuple[str, ...]]] = []
        fired: list[str] = []
        observed: dict[str, Scalar] = {}
        actions = self._actions
        for c, fail_closed in zip(self._compiled, self._fail_closed, strict=True):
            outcome = c.evaluate(facts)
            observed.update(outcome.observed)
            if outcome.problems:
                details = tuple(p.detail for p in outcome.problems)
                candidates.append((fail_closed, outcome.problems[0].rule_name, c.policy.name,
                                   outcome.deciding_source, details))
            for r in outcome.fired:
                fired.append(r.id)
                candidates.append((actions[r.id], r.id, c.policy.name, r, ()))
        if not candidates:
            return OrderJudgement(OrderAction.SEND, None, None, None, tuple(fired), (),
                                  observed)
        action = most_restrictive_order(a for a, *_ in candidates)
        # At equal restriction a fact problem is named first ("we could not know" is the
        # stronger reason), then rules in policy order.
        deciding = next((c for c in candidates if c[0] is action and c[4]),
                        next(c for c in candidates if c[0] is action))
        _, rule, policy, where, problems = deciding
        source = where.source if isinstance(where, Rule) else where
        return OrderJudgement(action, rule, policy, source, tuple(fired), problems, observed)

    def close(self) -> None:
        for c in self._compiled:
            c.close()
