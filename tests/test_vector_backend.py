"""The vectorised backend decides as durable-rules does: the same action, deciding rule, fired
rules and fail-closed findings on every snapshot, for generated policies and facts (NaN,
missing, wrong types, boundaries, dated and stale facts, broken envelopes), and on the shipped
history; the commands that use it refuse to report a result when the two disagree."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from pathlib import Path
from typing import Any

from conftest import REPO_ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.actions import Action
from engine.backends.agreement import CheckedBackend, verify
from engine.backends.vector import VectorBackend, Verdict
from engine.catalogue import CATALOGUE
from engine.clock import SNAPSHOT
from engine.evaluator import SafetyEvaluator
from engine.policy.loader import load_policy_set
from engine.policy.model import AllOf, AnyOf, Condition, Leaf, NotOf, Policy, PolicySet, Rule
from engine.policy.problems import Position

HISTORY = REPO_ROOT / "examples" / "history.jsonl"
TS = "2020-03-02T21:00:00Z"
AT = Position("generated.yaml", 1, 1)
#: Facts a generated rule may read: numbers with and without an upper bound, a whole number,
#: a flag and a string with choices.
NUMBERS = ("drift_score", "volatility", "expected_return", "price")
FACTS = (*NUMBERS, "days_since_rebalance", "book_empty", "safety_action")
THRESHOLDS = (0.0, 0.35, 0.5, 0.8, 1.0, -0.25, 3)
ACTIONS = tuple(a.value for a in Action)


def _threshold(fact: str) -> st.SearchStrategy[float | int]:
    spec = CATALOGUE[fact]
    return st.sampled_from([t for t in THRESHOLDS if spec.in_range(float(t))
                            and (spec.type != "integer" or float(t).is_integer())])


@st.composite
def leaves(draw: st.DrawFn) -> Leaf:
    fact = draw(st.sampled_from(FACTS))
    spec = CATALOGUE[fact]
    if spec.type == "boolean":
        return Leaf(fact, draw(st.sampled_from(["==", "!="])), draw(st.booleans()), AT)
    if spec.type == "string":
        op = draw(st.sampled_from(["==", "!=", "in", "not_in"]))
        if op in ("in", "not_in"):
            picked = draw(st.lists(st.sampled_from(spec.choices), min_size=1, max_size=3,
                                   unique=True))
            return Leaf(fact, op, tuple(picked), AT)
        return Leaf(fact, op, draw(st.sampled_from(spec.choices)), AT)
    op = draw(st.sampled_from(["<", "<=", ">", ">=", "==", "!=", "in", "not_in"]))
    if op in ("in", "not_in"):
        return Leaf(fact, op, tuple(draw(st.lists(_threshold(fact), min_size=1, max_size=3,
                                                  unique=True))), AT)
    return Leaf(fact, op, draw(_threshold(fact)), AT)


conditions: st.SearchStrategy[Condition] = st.recursive(
    leaves(),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: AllOf(tuple(xs), AT)),
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: AnyOf(tuple(xs), AT)),
        inner.map(lambda x: NotOf(x, AT))),
    max_leaves=6)


@st.composite
def policy_sets(draw: st.DrawFn) -> PolicySet:
    policies = []
    for p in range(draw(st.integers(1, 2))):
        name = f"safety-{p}"
        rules = tuple(
            Rule(f"p{p}-r{k}", "", draw(conditions), draw(st.sampled_from(ACTIONS)), AT, name)
            for k in range(draw(st.integers(1, 4))))
        age = draw(st.sampled_from([None, timedelta(days=1), timedelta(hours=1)]))
        fail = draw(st.sampled_from(["halt", "flatten", "block_new"]))
        policies.append(Policy("SafetyPolicy", name, "1.0.0", "", "risk", f"{name}.yaml",
                               f"# {name} {rules} {age} {fail}", rules, fail, age))
    return PolicySet(tuple(policies))


def _value(fact: str) -> st.SearchStrategy[Any]:
    spec = CATALOGUE[fact]
    odd = st.sampled_from([None, math.nan, math.inf, -math.inf, "0.5", True, [], {},
                           2**60, -1.0, 1e300])
    if spec.type == "boolean":
        good: st.SearchStrategy[Any] = st.booleans()
    elif spec.type == "string":
        good = st.sampled_from([*spec.choices, "unknown-action"])
    else:
        near = _threshold(fact).flatmap(lambda t: st.sampled_from(
            [t, float(t), math.nextafter(float(t), math.inf),
             math.nextafter(float(t), -math.inf), int(t) if float(t).is_integer() else t]))
        good = st.one_of(near, st.floats(-2, 20, allow_nan=False))
    dated = good.flatmap(lambda v: st.sampled_from([
        {"value": v, "as_of": "2020-03-02T20:30:00Z"},   # fresh
        {"value": v, "as_of": "2020-03-01T12:00:00Z"},   # stale under 1h, fresh under 1d
        {"value": v, "as_of": "2020-02-20T00:00:00Z"},   # stale under both
        {"value": v, "as_of": "2020-03-03T00:00:00Z"},   # after the snapshot
        {"value": v}, {"as_of": "2020-03-02T20:30:00Z"}, {"value": v, "extra": 1}]))
    return st.one_of(good, good, good, odd, dated)


@st.composite
def snapshots(draw: st.DrawFn) -> dict[str, Any]:
    snap: dict[str, Any] = {"ts": draw(st.sampled_from([TS, TS, TS, "2020-03-02", None, 7])),
                            "symbol": draw(st.sampled_from(["SPX", "SPX", "", 3]))}
    for key in ("ts", "symbol"):
        if snap[key] is None:
            del snap[key]
    for fact in FACTS:
        if draw(st.integers(0, 9)) > 0:  # one fact in ten is missing
            snap[fact] = draw(_value(fact))
    return snap


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(policy_sets(), st.lists(snapshots(), min_size=1, max_size=24))
def test_generated_policies_and_facts_decide_alike(ps: PolicySet,
                                                   snaps: list[dict[str, Any]]) -> None:
    durable = SafetyEvaluator(ps)
    try:
        batch = VectorBackend(ps).evaluate(snaps)
        for i, snap in enumerate(snaps):
            record = durable.decide(snap)
            assert batch.verdict(i) == Verdict.of(record), json.dumps(snap, default=str)
            # The decision assembled from the batch is the record durable-rules makes, apart
            # from its id and stamp.
            mine = batch.decision(i).to_json()
            theirs = record.to_json()
            for d in (mine, theirs):
                del d["decision_id"], d["decided_at"]
            assert mine == theirs
    finally:
        durable.close()


def _shipped() -> list[tuple[str, object]]:
    lines = HISTORY.read_text(encoding="utf-8").splitlines()
    return [(f"{HISTORY.name}:{n}", json.loads(line)) for n, line in enumerate(lines, 1)]


def test_the_backends_agree_on_every_snapshot_of_the_shipped_history() -> None:
    items = _shipped()
    result = verify(load_policy_set([str(REPO_ROOT / "policies")]), items)
    assert result.compared == len(items) == result.agreed
    assert result.first is None


def test_a_batch_names_the_fail_closed_action_of_each_policy(safety_set: PolicySet) -> None:
    snaps = [{"ts": TS, "symbol": "A", "drift_score": 0.1, "volatility": 0.2,
              "coherence": 0.9, "frs": 0.9, "meta_reliability": math.nan},
             {"ts": TS, "symbol": "B", "drift_score": 0.9, "volatility": 0.2,
              "coherence": 0.9, "frs": 0.9, "meta_reliability": 0.9},
             {"symbol": "C"}]
    batch = VectorBackend(safety_set).evaluate(snaps)
    nan, drift, no_ts = (batch.verdict(i) for i in range(3))
    assert (nan.action, nan.rule) == (Action.HALT, "fact-invalid:meta_reliability")
    assert (drift.action, drift.rule, drift.fired) == (Action.HALT, "drift-spike-halt",
                                                       frozenset({"drift-spike-halt"}))
    assert no_ts.action is Action.HALT and no_ts.rule == "fact-missing:ts"


def _broken_vector(ps: PolicySet) -> CheckedBackend:
    """A checked backend whose vectorised half reads `>=` as `>`: the kind of slip the check
    exists to catch."""
    checked = CheckedBackend(ps)
    wrong = tuple(
        Policy(p.kind, p.name, p.version, p.description, p.owner, p.path, p.text,
               tuple(Rule(r.id, r.description,
                          Leaf(r.when.fact, ">", r.when.value, r.when.pos)
                          if isinstance(r.when, Leaf) and r.when.op == ">=" else r.when,
                          r.action, r.pos, r.policy) for r in p.rules),
               p.fail_closed, p.max_fact_age, p.spec, p.max_clock_skew)
        for p in ps.policies)
    checked.vector = VectorBackend(PolicySet(wrong))
    return checked


def test_a_disagreement_is_counted_and_named(safety_set: PolicySet) -> None:
    at_threshold = {"ts": TS, "symbol": "SPX", "drift_score": 0.8, "volatility": 0.2,
                    "coherence": 0.9, "frs": 0.9, "meta_reliability": 0.9}
    checked = _broken_vector(safety_set)
    try:
        _, _, first = checked.compare([("a.jsonl:1", dict(at_threshold, drift_score=0.1)),
                                       ("a.jsonl:2", at_threshold)])
    finally:
        checked.close()
    assert checked.agreement.compared == 2 and checked.agreement.agreed == 1
    assert first is not None and first.where == "a.jsonl:2"
    assert first.durable.action is Action.HALT and first.vector.action is Action.ALLOW


def test_verify_backend_reports_rates_and_agreement(run_cli: Any, tmp_path: Path) -> None:
    facts = tmp_path / "facts.jsonl"
    facts.write_text("\n".join(json.dumps(o) for _, o in _shipped()[:300]) + "\n",
                     encoding="utf-8")
    proc = run_cli("verify-backend", "--policies", str(REPO_ROOT / "policies"),
                   "--facts", str(facts), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert (doc["compared"], doc["agreed"], doc["disagreed"]) == (300, 300, 0)
    assert doc["vector"]["snapshots_per_s"] > 0 and doc["durable"]["snapshots_per_s"] > 0
    assert doc["first_disagreement"] is None


def test_vector_decisions_refuse_the_wall_clock(safety_set: PolicySet) -> None:
    batch = VectorBackend(safety_set).evaluate([{"ts": TS, "symbol": "A"}])
    assert batch.decision(0, SNAPSHOT).action is Action.HALT
    try:
        batch.decision(0, SNAPSHOT.__class__(SNAPSHOT.kind.__class__("wall")))
    except ValueError as e:
        assert "snapshot clock" in str(e)
    else:
        raise AssertionError("a wall-clock decision was made")


def _one_rule(when: Leaf) -> PolicySet:
    rule = Rule("r", "", when, "block_new", AT, "s")
    return PolicySet((Policy("SafetyPolicy", "s", "1.0.0", "", "risk", "s.yaml", "s", (rule,),
                             "halt", None),))


def test_an_infinite_price_is_named_as_the_fact_it_is() -> None:
    # An unbounded number fact passed the evaluator's quick range check at infinity and only
    # the rule engine's writer refused it, as an engine error.
    ps = _one_rule(Leaf("price", "<", 1.0, AT))
    durable = SafetyEvaluator(ps)
    try:
        d = durable.decide({"ts": TS, "symbol": "A", "price": math.inf})
    finally:
        durable.close()
    assert (d.action, d.rule) == (Action.HALT, "fact-invalid:price")


def test_a_count_too_large_to_be_exact_is_invalid() -> None:
    ps = _one_rule(Leaf("days_since_rebalance", "<", 1, AT))
    durable = SafetyEvaluator(ps)
    try:
        d = durable.decide({"ts": TS, "symbol": "A", "days_since_rebalance": 1e300})
    finally:
        durable.close()
    assert (d.action, d.rule) == (Action.HALT, "fact-invalid:days_since_rebalance")
    assert "too large" in d.findings[0].detail
