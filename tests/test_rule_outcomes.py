"""What a compiled rotation or approval policy answers for a set of derived facts, and how the
plain-Python reference explains one comparison: the rules that fired, the facts that could
not be used and the id that answers "why". Real YAML, the real rule engine, in process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from engine.policy.loader import policy_set_from_texts
from engine.policy.model import AllOf, AnyOf, Leaf, NotOf, Policy
from engine.policy.problems import Position
from engine.rules.compiled_policy import CompiledPolicy
from engine.rules.reference import Comparison, compare, comparisons, holds

APPROVAL = """\
apiVersion: fuggerbot/v1
kind: ApprovalPolicy
metadata: {name: desk-approval, version: 1.0.0}
spec:
  mode: semi_autonomous
  rules:
    - id: large-order
      when: {fact: order_notional, op: ">", value: 250000}
      action: require_approval
    - id: opening-on-empty-book
      when:
        all:
          - {fact: book_empty, op: "==", value: true}
          - {fact: order_notional, op: ">", value: 1000}
      action: require_approval
"""


@pytest.fixture
def approval() -> Iterator[CompiledPolicy]:
    (policy,) = policy_set_from_texts([("approval.yaml", APPROVAL)]).policies
    compiled = CompiledPolicy(policy)
    yield compiled
    compiled.close()


def rule_source(policy: Policy, rule_id: str) -> str:
    (rule,) = (r for r in policy.rules if r.id == rule_id)
    return rule.source


def test_fired_rules_come_in_policy_order_with_the_values_seen(
        approval: CompiledPolicy) -> None:
    out = approval.evaluate({"order_notional": 300000.0, "book_empty": True, "other": 1})
    assert [r.id for r in out.fired] == ["large-order", "opening-on-empty-book"]
    assert dict(out.observed) == {"order_notional": 300000.0, "book_empty": True}
    assert (out.failed_closed, out.problems) == (False, ())
    assert out.deciding == "large-order"
    assert out.deciding_source == rule_source(approval.policy, "large-order")
    assert out.deciding_source.startswith("approval.yaml:")
    quiet = approval.evaluate({"order_notional": 10.0, "book_empty": False})
    assert (quiet.fired, quiet.deciding, quiet.deciding_source) == ((), None, None)


@pytest.mark.parametrize(("facts", "problems"), [
    ({"book_empty": True}, [("order_notional", "missing", "order_notional is not known")]),
    ({"order_notional": None, "book_empty": True},
     [("order_notional", "missing", "order_notional is not known")]),
    ({"order_notional": float("nan"), "book_empty": "yes"},
     [("order_notional", "invalid", "order_notional is NaN, not a finite number"),
      ("book_empty", "invalid", "book_empty must be true or false, got a string 'yes'")]),
])
def test_a_fact_that_cannot_be_used_fails_closed_and_is_named(
        approval: CompiledPolicy, facts: dict[str, Any],
        problems: list[tuple[str, str, str]]) -> None:
    out = approval.evaluate(facts)
    assert [(p.fact, p.problem, p.detail) for p in out.problems] == problems
    assert out.failed_closed
    assert out.fired == ()
    assert out.deciding == f"fact-{problems[0][1]}:{problems[0][0]}"
    # "why" points at the policy's first rule: the facts stop every rule of it.
    assert out.deciding_source == rule_source(approval.policy, "large-order")


def test_a_rule_engine_failure_is_a_problem_not_a_quiet_pass(approval: CompiledPolicy) -> None:
    approval.close()
    out = approval.evaluate({"order_notional": 300000.0, "book_empty": True})
    assert [(p.fact, p.problem, p.rule_name) for p in out.problems] == [
        ("*", "engine-error", "engine-error")]
    assert "durable-rules" in out.problems[0].detail
    assert out.failed_closed and out.fired == ()
    assert out.deciding == "engine-error"


HERE = Position("p.yaml", 3, 7)


def leaf(fact: str, op: str, value: Any) -> Leaf:
    return Leaf(fact, op, value, HERE)  # type: ignore[arg-type]


@pytest.mark.parametrize(("op", "threshold", "seen", "result"), [
    ("<", 0.4, 0.3, True), ("<", 0.4, 0.4, False), ("<=", 0.4, 0.4, True),
    ("<=", 0.4, 0.5, False), (">", 0.4, 0.4, False), (">", 0.4, 0.5, True),
    (">=", 0.4, 0.4, True), (">=", 0.4, 0.3, False), ("==", 1, 1.0, True),
    ("==", "halt", "halt", True), ("!=", "halt", "allow", True), ("!=", 2, 2, False),
    ("in", ("halt", "flatten"), "halt", True), ("in", ("halt",), "allow", False),
    ("not_in", ("halt",), "allow", True), ("not_in", ("halt",), "halt", False),
    ("in", "halt", "halt", False), ("not_in", "halt", "allow", False),
    ("<", (1, 2), 0, False), ("==", (1, 2), 1, False),
    ("<", "halt", 0.1, False), ("<", 0.5, True, False), (">=", 0.5, "x", False),
])
def test_the_reference_compares_like_the_rule_engine(op: str, threshold: Any, seen: Any,
                                                     result: bool) -> None:
    assert compare(leaf("f", op, threshold), seen) is result


def test_an_unknown_fact_fails_every_comparison_whichever_way_it_is_negated() -> None:
    ge = leaf("drift_score", ">=", 0.8)
    assert holds(ge, {"drift_score": 0.9}) and not holds(ge, {})
    assert holds(NotOf(ge, HERE), {"drift_score": 0.1})
    assert not holds(NotOf(ge, HERE), {})
    both = AllOf((ge, leaf("frs", "<", 0.4)), HERE)
    either = AnyOf((ge, leaf("frs", "<", 0.4)), HERE)
    assert not holds(both, {"drift_score": 0.9})
    assert holds(both, {"drift_score": 0.9, "frs": 0.1})
    assert holds(either, {"frs": 0.1}) and not holds(either, {"frs": 0.9})
    # not (a and b) is (not a) or (not b): one known false comparison is enough.
    assert holds(NotOf(both, HERE), {"drift_score": 0.1})
    assert not holds(NotOf(either, HERE), {"drift_score": 0.1})
    assert holds(NotOf(either, HERE), {"drift_score": 0.1, "frs": 0.9})


def test_each_comparison_explains_itself_with_its_margin() -> None:
    cond = AllOf((leaf("volatility", ">=", 0.35), NotOf(leaf("frs", "<", 0.4), HERE),
                  AnyOf((leaf("safety_action", "==", "halt"),
                         leaf("coherence", "<=", 0.5)), HERE)), HERE)
    found = comparisons(cond, {"volatility": 0.25, "frs": 0.5, "safety_action": "allow"})
    assert [(c.leaf.fact, c.observed, c.result, c.negated) for c in found] == [
        ("volatility", 0.25, False, False), ("frs", 0.5, False, True),
        ("safety_action", "allow", False, False), ("coherence", None, None, False)]
    assert [c.margin for c in found] == [pytest.approx(0.1), pytest.approx(-0.1), None, None]
    assert [c.text() for c in found] == [
        "volatility >= 0.35  (observed 0.25: false)",
        "frs < 0.4  (observed 0.5: false)",
        "safety_action == 'halt'  (observed 'allow': false)",
        "coherence <= 0.5  (observed unknown: unknown)"]
    assert Comparison(leaf("frs", "<", 0.4), 0.1, True).margin == pytest.approx(-0.3)
    assert Comparison(leaf("frs", "<=", 0.4), 0.4, True).margin == 0.0
    assert Comparison(leaf("frs", ">", 0.4), 0.9, True).margin == pytest.approx(-0.5)
    assert Comparison(leaf("frs", ">=", 0.4), True, True).margin is None
    assert Comparison(leaf("frs", ">=", (0.4,)), 0.5, True).margin is None
    assert Comparison(leaf("book_empty", "==", True), True, True).text() == (
        "book_empty == true  (observed True: true)")
