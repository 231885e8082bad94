"""The default safety rails (policies/safety.yaml) at their boundaries and in every combination."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from typing import Any

import pytest
from conftest import SAFETY_YAML, safety_rule_line

from engine.actions import Action, most_restrictive
from engine.clock import SNAPSHOT, Clock, ClockKind
from engine.decision import Decision
from engine.evaluator import SafetyEvaluator
from engine.explain import explain
from engine.ids import new_id
from engine.policy.model import PolicySet, Scalar
from engine.schemas import validator
from engine.timeutil import parse_utc, utc_now

TS = "2025-03-04T15:30:00Z"
#: Every rail well clear of its threshold.
CALM: dict[str, float] = {
    "drift_score": 0.1,
    "volatility": 0.12,
    "coherence": 0.9,
    "frs": 0.9,
    "meta_reliability": 0.9,
}

# rail id -> (action, fact values that switch it on)
RAILS: dict[str, tuple[Action, dict[str, float]]] = {
    "drift-spike-halt": (Action.HALT, {"drift_score": 0.93}),
    "high-volatility-flatten": (Action.FLATTEN, {"volatility": 0.61}),
    "coherence-break-block": (Action.BLOCK_NEW, {"coherence": 0.2}),
    "low-confidence-wait": (Action.WAIT_CONFIRMATION, {"frs": 0.15}),
}
POLICY_ORDER = tuple(RAILS)


def snapshot(**facts: float) -> dict[str, Any]:
    return {"ts": TS, "symbol": "SP500", **CALM, **facts}


def decide(evaluator: SafetyEvaluator, snap: dict[str, Any]) -> Decision:
    decision = evaluator.decide(snap)
    assert_valid_json(decision)
    return decision


def assert_valid_json(decision: Decision) -> None:
    doc = decision.to_json()
    # through real JSON text, refusing NaN and infinities as a strict reader would
    again = json.loads(json.dumps(doc, allow_nan=False))
    validator("decision").validate(again)
    assert again["all_clear"] is (again["action"] == "allow")


def test_calm_snapshot_is_all_clear(safety_evaluator: SafetyEvaluator) -> None:
    d = decide(safety_evaluator, snapshot())
    assert d.action is Action.ALLOW
    assert d.all_clear
    assert d.deciding_rule is None
    assert d.fired == ()
    assert d.findings == ()
    assert d.to_json()["deciding_rule"] is None


def test_default_policy_is_the_v2_rails(safety_set: PolicySet) -> None:
    (policy,) = safety_set.of_kind("SafetyPolicy")
    assert policy.name == "core-safety"
    assert policy.fail_closed == "halt"
    assert [(r.id, r.action) for r in policy.rules] == [
        (rid, action.value) for rid, (action, _) in RAILS.items()]


@pytest.mark.parametrize(
    ("fact", "value", "rule", "action"),
    [
        ("drift_score", 0.8, "drift-spike-halt", Action.HALT),
        ("drift_score", 0.7999999, None, Action.ALLOW),
        ("drift_score", 1.0, "drift-spike-halt", Action.HALT),
        ("drift_score", 1, "drift-spike-halt", Action.HALT),
        ("volatility", 0.35, "high-volatility-flatten", Action.FLATTEN),
        ("volatility", 0.3499999, None, Action.ALLOW),
        ("volatility", 5.0, "high-volatility-flatten", Action.FLATTEN),
        ("coherence", 0.5, "coherence-break-block", Action.BLOCK_NEW),
        ("coherence", 0.5000001, None, Action.ALLOW),
        ("coherence", 0.0, "coherence-break-block", Action.BLOCK_NEW),
        ("coherence", 0, "coherence-break-block", Action.BLOCK_NEW),
        ("frs", 0.4, None, Action.ALLOW),
        ("frs", 0.3999999, "low-confidence-wait", Action.WAIT_CONFIRMATION),
        ("frs", 1e-7, "low-confidence-wait", Action.WAIT_CONFIRMATION),
        ("meta_reliability", 0.4, None, Action.ALLOW),
        ("meta_reliability", 0.3999999, "low-confidence-wait", Action.WAIT_CONFIRMATION),
        ("meta_reliability", 0.0, "low-confidence-wait", Action.WAIT_CONFIRMATION),
        ("drift_score", 1e-7, None, Action.ALLOW),
        ("drift_score", 0.0, None, Action.ALLOW),
    ],
)
def test_boundary(safety_evaluator: SafetyEvaluator, fact: str, value: float,
                  rule: str | None, action: Action) -> None:
    d = decide(safety_evaluator, snapshot(**{fact: value}))
    assert d.action is action
    assert d.all_clear is (action is Action.ALLOW)
    assert d.findings == ()
    if rule is None:
        assert d.deciding_rule is None
        assert d.fired == ()
    else:
        assert d.deciding_rule is not None
        assert d.deciding_rule.rule == rule
        assert [f.rule for f in d.fired] == [rule]
        assert d.fired[0].observed[fact] == value


COMBINATIONS = list(itertools.product((False, True), repeat=len(RAILS)))


@pytest.mark.parametrize("on", COMBINATIONS,
                         ids=["".join("1" if b else "0" for b in c) for c in COMBINATIONS])
def test_every_combination_of_rails(safety_evaluator: SafetyEvaluator,
                                    on: tuple[bool, ...]) -> None:
    active = [rid for rid, flag in zip(POLICY_ORDER, on, strict=True) if flag]
    facts: dict[str, float] = {}
    for rid in active:
        facts.update(RAILS[rid][1])
    d = decide(safety_evaluator, snapshot(**facts))

    expected = most_restrictive(RAILS[rid][0] for rid in active)
    assert d.action is expected
    assert d.all_clear is (not active)
    assert [f.rule for f in d.fired] == active
    assert {f.rule: f.action for f in d.fired} == {rid: RAILS[rid][0] for rid in active}
    assert d.findings == ()
    if not active:
        assert d.deciding_rule is None
        return
    # the rails' actions are all different, so the most restrictive one names a single rule
    deciding = max(active, key=lambda rid: RAILS[rid][0].severity)
    assert d.deciding_rule is not None
    assert d.deciding_rule.rule == deciding
    assert d.deciding_rule.policy == "core-safety"
    assert d.deciding_rule.version == "2.1.0"
    assert d.deciding_rule.source == f"{SAFETY_YAML}:{safety_rule_line(deciding)}:7"
    for f in d.fired:
        assert f.source == f"{SAFETY_YAML}:{safety_rule_line(f.rule)}:7"


def test_low_confidence_fires_on_either_reliability(safety_evaluator: SafetyEvaluator) -> None:
    for facts in ({"frs": 0.1}, {"meta_reliability": 0.1},
                  {"frs": 0.1, "meta_reliability": 0.1}):
        d = decide(safety_evaluator, snapshot(**facts))
        assert d.action is Action.WAIT_CONFIRMATION
        assert [f.rule for f in d.fired] == ["low-confidence-wait"]
        assert d.fired[0].observed == {"frs": facts.get("frs", CALM["frs"]),
                                       "meta_reliability": facts.get("meta_reliability",
                                                                     CALM["meta_reliability"])}


def test_decision_records_the_policy_set(safety_evaluator: SafetyEvaluator,
                                         safety_set: PolicySet) -> None:
    d = decide(safety_evaluator, snapshot(volatility=0.5))
    doc = d.to_json()
    assert doc["policy_set"] == {"hash": safety_set.hash, "policies": {"core-safety": "2.1.0"}}
    assert doc["ts"] == TS
    assert doc["symbol"] == "SP500"
    assert doc["fired"][0]["observed"] == {"volatility": 0.5}


def test_decision_ids_are_unique_and_sortable(safety_evaluator: SafetyEvaluator) -> None:
    ids = [safety_evaluator.decide(snapshot()).decision_id for _ in range(50)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


def test_dated_fresh_facts_are_used(safety_evaluator: SafetyEvaluator) -> None:
    snap = snapshot()
    snap["volatility"] = {"value": 0.35, "as_of": "2025-03-04T15:00:00Z"}
    snap["coherence"] = {"value": 0.95, "as_of": TS}  # as_of equal to ts is fresh
    d = decide(safety_evaluator, snap)
    assert d.action is Action.FLATTEN
    assert [f.rule for f in d.fired] == ["high-volatility-flatten"]
    assert d.fired[0].observed == {"volatility": 0.35}


def test_explain_ages_dated_facts_by_the_clock_it_runs_on(safety_evaluator: SafetyEvaluator,
                                                          safety_set: PolicySet) -> None:
    """A dated fact fresh at the snapshot's ts but two days old against the wall clock is
    unknown to `fugger explain` on the wall clock, as it is to the decision; on the snapshot
    clock (a replay) it is the value the rule saw."""
    snap = snapshot()
    snap["volatility"] = {"value": 0.2, "as_of": "2025-03-04T15:00:00Z"}
    wall = Clock(ClockKind.WALL, parse_utc(TS) + timedelta(days=2))

    def observed(clock: Clock) -> Scalar | None:
        _, checks = explain(safety_evaluator, safety_set, snap, clock)
        (check,) = (c for c in checks if c.rule == "high-volatility-flatten")
        (comparison,) = check.comparisons
        return comparison.observed

    assert observed(wall) is None
    assert observed(SNAPSHOT) == 0.2
    live = safety_evaluator.decide(snap, clock=wall)
    assert (live.action, [f.rule for f in live.findings]) == (
        Action.HALT, ["fact-stale:ts", "fact-stale:volatility"])
    assert live.findings[1].detail == "volatility is 2910m old; the policy allows 1d"
    assert safety_evaluator.decide(snap, clock=SNAPSHOT).action is Action.ALLOW


def test_a_decision_records_the_clock_and_the_instant_it_was_made_at(
        safety_evaluator: SafetyEvaluator) -> None:
    """A cycle fixes its clock at one instant; each of its decisions records that instant as
    when it was decided, whichever clock, so a replay's record reads as history did."""
    at = parse_utc("2025-03-04T15:31:00Z")
    for kind in ClockKind:
        d = safety_evaluator.decide(snapshot(), clock=Clock(kind, at))
        assert (d.action, d.clock, d.decided_at) == (Action.ALLOW, kind.value,
                                                     "2025-03-04T15:31:00Z")


def test_a_policy_set_without_a_safety_policy_is_refused() -> None:
    with pytest.raises(ValueError) as refused:
        SafetyEvaluator(PolicySet(()))
    assert str(refused.value) == ("the policy set has no SafetyPolicy: nothing could ever "
                                  "allow or refuse a trade")


def test_a_decision_id_sorts_by_the_instant_it_was_decided_at(
        safety_evaluator: SafetyEvaluator) -> None:
    """An id begins with its decision's instant, so a decision made for a later instant sorts
    after every id made before it (one second ahead here, to leave the ids of other tests
    in order)."""
    before = safety_evaluator.decide(snapshot()).decision_id
    at = utc_now() + timedelta(seconds=1)
    d = safety_evaluator.decide(snapshot(), clock=Clock(ClockKind.SNAPSHOT, at))
    later = new_id(int(at.timestamp() * 1000))
    assert before < d.decision_id < later
    assert d.decision_id[:10] == later[:10]
