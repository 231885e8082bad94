"""Running policy test cases against a policy set, and the rule coverage they reach.

Safety cases go through the SafetyEvaluator exactly as `fugger eval` decides, approval cases
through the ApprovalEvaluator every order passes (manual: every order waits, rule
`mode-manual`; autonomous: none waits; semi_autonomous: the rules decide, failing closed to
`require_approval` on a missing or invalid fact). Order cases go through the
OrderPolicyEvaluator the gate consults for every order (`send` when no rule fires; a missing or
invalid fact fails closed to the policy's fail_closed action). A rotation case goes through
each rotation policy's trigger rules: it rebalances when a trigger fires, and holds (the
rotation's fail-closed outcome) when a fact the triggers read is missing or invalid.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.evaluator import SafetyEvaluator
from engine.execution.approval_policy import ApprovalEvaluator
from engine.execution.order_policy import OrderPolicyEvaluator
from engine.policy.model import Policy, PolicySet, Rule
from engine.portfolio.triggers import RotationTriggers
from engine.rules.durable_backend import EngineError
from engine.tooling.cases import POLICY_KIND, Case


@dataclass(frozen=True)
class Outcome:
    """What the policy set decided on one case."""

    action: str
    rule: str | None
    fired: tuple[str, ...]
    #: Set when the case could not be decided at all (e.g. no policy of its kind).
    error: str = ""

    def text(self) -> str:
        return f"action {self.action} rule {self.rule or '-'}"


@dataclass(frozen=True)
class CaseResult:
    case: Case
    got: Outcome
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def where(self) -> str:
        return f"{self.case.pos.file}:{self.case.pos.line}"

    def message(self) -> str:
        """FILE:LINE: case NAME: expected ..., got ... (empty when the case passed)."""
        if self.passed:
            return ""
        return f"{self.where}: case {self.case.name}: " + "; ".join(self.failures)

    def to_json(self) -> dict[str, Any]:
        e = self.case.expect
        expected: dict[str, Any] = {"action": e.action}
        if e.check_rule:
            expected["rule"] = e.rule
        if e.fired is not None:
            expected["fired"] = list(e.fired)
        return {
            "file": self.case.pos.file, "line": self.case.pos.line, "name": self.case.name,
            "kind": self.case.kind, "passed": self.passed, "expected": expected,
            "got": {"action": self.got.action, "rule": self.got.rule,
                    "fired": list(self.got.fired)},
            "message": self.message(),
        }


@dataclass(frozen=True)
class RuleCoverage:
    rule: Rule
    kind: str
    cases: int


@dataclass(frozen=True)
class Coverage:
    rules: tuple[RuleCoverage, ...]

    @property
    def total(self) -> int:
        return len(self.rules)

    @property
    def exercised(self) -> int:
        return sum(1 for r in self.rules if r.cases > 0)

    @property
    def percent(self) -> float:
        """Share of rules fired by at least one case; a set without rules is fully covered."""
        return 100.0 if not self.rules else 100.0 * self.exercised / self.total

    @property
    def untested(self) -> tuple[Rule, ...]:
        return tuple(r.rule for r in self.rules if r.cases == 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "percent": round(self.percent, 2), "exercised": self.exercised, "total": self.total,
            "rules": [{"rule": r.rule.id, "policy": r.rule.policy, "kind": r.kind,
                       "source": r.rule.source, "cases": r.cases} for r in self.rules],
            "untested": [r.id for r in self.untested],
        }


class CaseRunner:
    """Evaluators for one policy set, built once and reused for every case."""

    def __init__(self, policy_set: PolicySet) -> None:
        self.policy_set = policy_set
        self._safety: SafetyEvaluator | None = None
        self._approval: ApprovalEvaluator | None = None
        self._orders: OrderPolicyEvaluator | None = None
        self._triggers: dict[str, RotationTriggers] = {}

    def run(self, case: Case) -> CaseResult:
        got = self.decide(case)
        return CaseResult(case, got, _failures(case, got))

    def run_all(self, cases: Iterable[Case]) -> list[CaseResult]:
        return [self.run(c) for c in cases]

    def decide(self, case: Case) -> Outcome:
        kind = POLICY_KIND[case.kind]
        policies = self.policy_set.of_kind(kind)
        if not policies:
            return Outcome("-", None, (), error=f"the policy set has no {kind}")
        try:
            if case.kind == "safety":
                return self._decide_safety(case.facts)
            if case.kind == "rotation":
                return _combine([self._rotation(p, case.facts) for p in policies], "rebalance")
            if case.kind == "order":
                return self._decide_order(case.facts)
            return self._decide_approval(case.facts)
        except (EngineError, ValueError) as e:  # the set does not compile: the case cannot pass
            return Outcome("-", None, (), error=f"the policy set could not be evaluated: {e}")

    def _decide_safety(self, facts: Mapping[str, Any]) -> Outcome:
        if self._safety is None:
            self._safety = SafetyEvaluator(self.policy_set)
        d = self._safety.decide(dict(facts))
        return Outcome(d.action.value, d.rule,
                       tuple(f.rule for f in d.fired))

    def _rotation(self, policy: Policy, facts: Mapping[str, Any]) -> Outcome:
        triggers = self._triggers.get(policy.name)
        if triggers is None:
            triggers = self._triggers[policy.name] = RotationTriggers(policy)
        t = triggers.evaluate(facts)
        if t.failed_closed:
            return Outcome(policy.fail_closed, t.rule, t.fired)
        if t.triggered:
            return Outcome("rebalance", t.rule, t.fired)
        return Outcome("none", None, ())

    def _decide_approval(self, facts: Mapping[str, Any]) -> Outcome:
        if self._approval is None:
            self._approval = ApprovalEvaluator(self.policy_set)
        need = self._approval.need(dict(facts))
        if need.required:
            return Outcome("require_approval", need.rule, need.fired)
        return Outcome("none", None, need.fired)

    def _decide_order(self, facts: Mapping[str, Any]) -> Outcome:
        if self._orders is None:
            self._orders = OrderPolicyEvaluator(self.policy_set)
        j = self._orders.judge(dict(facts))
        return Outcome(j.action.value, j.rule, j.fired)

    def close(self) -> None:
        if self._orders is not None:
            self._orders.close()
        if self._safety is not None:
            self._safety.close()
        if self._approval is not None:
            self._approval.close()
        for t in self._triggers.values():
            t.close()


def _combine(outcomes: Sequence[Outcome], acting: str) -> Outcome:
    """Several policies of one kind: the first that fails closed decides, else the first that
    acts, else nothing happens; every fired rule is kept."""
    fired = tuple(r for o in outcomes for r in o.fired)
    for o in outcomes:
        if o.action not in (acting, "none"):
            return Outcome(o.action, o.rule, fired)
    for o in outcomes:
        if o.action == acting:
            return Outcome(o.action, o.rule, fired)
    return Outcome("none", None, fired)


def _failures(case: Case, got: Outcome) -> tuple[str, ...]:
    if got.error:
        return (got.error,)
    e = case.expect
    out: list[str] = []
    if got.action != e.action or (e.check_rule and got.rule != e.rule):
        out.append(f"expected {e.text()}, got {got.text()}")
    if e.fired is not None and set(e.fired) != set(got.fired):
        out.append(f"expected fired [{', '.join(sorted(e.fired))}], "
                   f"got fired [{', '.join(sorted(got.fired))}]")
    return tuple(out)


def coverage(policy_set: PolicySet, results: Iterable[CaseResult]) -> Coverage:
    """For every rule of the set, how many cases fired it."""
    counts: dict[str, int] = {}
    for res in results:
        for rid in set(res.got.fired):
            counts[rid] = counts.get(rid, 0) + 1
    return Coverage(tuple(RuleCoverage(r, p.kind, counts.get(r.id, 0))
                          for p in policy_set.policies for r in p.rules))
