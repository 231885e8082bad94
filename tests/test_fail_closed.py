"""Fail closed: a fact that is missing, malformed, out of range or stale never lets a trade
through; the decision names the fact and the problem."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from conftest import SAFETY_YAML, RunCli, WritePolicy, safety_rule_line
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.actions import FAIL_CLOSED_FLOOR, Action, most_restrictive
from engine.catalogue import CATALOGUE
from engine.decision import Decision
from engine.evaluator import SafetyEvaluator
from engine.facts import quick_check, type_problem
from engine.policy.loader import load_policy_set
from engine.schemas import validator

TS = "2025-03-04T15:30:00Z"
FRESH = "2025-03-04T09:00:00Z"
ONE_DAY_OLD = "2025-03-03T15:30:00Z"
STALE = "2025-03-03T15:29:59Z"  # one second past the policy's max_fact_age of 1d
FUTURE = "2025-03-04T15:30:01Z"
NAIVE = "2025-03-04T09:00:00"

CALM: dict[str, float] = {
    "drift_score": 0.1,
    "volatility": 0.12,
    "coherence": 0.9,
    "frs": 0.9,
    "meta_reliability": 0.9,
}
FACTS = tuple(CALM)
READERS = {
    "drift_score": ("drift-spike-halt",),
    "volatility": ("high-volatility-flatten",),
    "coherence": ("coherence-break-block",),
    "frs": ("low-confidence-wait",),
    "meta_reliability": ("low-confidence-wait",),
}
OUT_OF_RANGE = {
    "drift_score": 80,
    "volatility": 35,
    "coherence": -0.1,
    "frs": 1.0000001,
    "meta_reliability": 40,
}
MISSING = object()


def snapshot(**facts: Any) -> dict[str, Any]:
    snap: dict[str, Any] = {"ts": TS, "symbol": "SP500", **CALM}
    for k, v in facts.items():
        if v is MISSING:
            snap.pop(k, None)
        else:
            snap[k] = v
    return snap


def decide(evaluator: SafetyEvaluator, raw: object) -> Decision:
    d = evaluator.decide(raw)
    doc = json.loads(json.dumps(d.to_json(), allow_nan=False))
    validator("decision").validate(doc)
    return d


BAD_VALUES: list[tuple[str, Any, str]] = [
    ("missing-key", MISSING, "missing"),
    ("null", None, "missing"),
    ("nan", math.nan, "invalid"),
    ("+inf", math.inf, "invalid"),
    ("-inf", -math.inf, "invalid"),
    ("string", "0.5", "invalid"),
    ("empty-string", "", "invalid"),
    ("true", True, "invalid"),
    ("false", False, "invalid"),
    ("list", [0.5], "invalid"),
    ("integer-beyond-float", 10**400, "invalid"),
    ("object-without-value", {"as_of": FRESH}, "missing"),
    ("empty-object", {}, "missing"),
    ("object-with-null-value", {"value": None, "as_of": FRESH}, "missing"),
    ("object-with-extra-key", {"value": 0.5, "unit": "fraction"}, "invalid"),
    ("object-with-nan", {"value": math.nan, "as_of": FRESH}, "invalid"),
    ("stale", {"value": 0.5, "as_of": STALE}, "stale"),
    ("as-of-after-ts", {"value": 0.5, "as_of": FUTURE}, "invalid"),
    ("as-of-naive", {"value": 0.5, "as_of": NAIVE}, "invalid"),
    ("as-of-garbage", {"value": 0.5, "as_of": "yesterday"}, "invalid"),
    ("as-of-number", {"value": 0.5, "as_of": 1741100000}, "invalid"),
]


@pytest.mark.parametrize("fact", FACTS)
@pytest.mark.parametrize(("case", "bad", "problem"), BAD_VALUES, ids=[c[0] for c in BAD_VALUES])
def test_bad_fact_halts(safety_evaluator: SafetyEvaluator, fact: str, case: str, bad: Any,
                        problem: str) -> None:
    d = decide(safety_evaluator, snapshot(**{fact: bad}))
    assert d.action is Action.HALT
    assert not d.all_clear
    assert d.deciding_rule is not None
    assert d.deciding_rule.rule == f"fact-{problem}:{fact}"
    assert d.deciding_rule.policy == "core-safety"
    # the fail-closed record points at the rule that needed the fact
    assert d.deciding_rule.source == f"{SAFETY_YAML}:{safety_rule_line(READERS[fact][0])}:7"
    assert [(f.fact, f.problem, f.action) for f in d.findings] == [(fact, problem, Action.HALT)]
    assert d.findings[0].needed_by == READERS[fact]
    assert d.findings[0].detail
    assert d.fired == ()


@pytest.mark.parametrize("fact", FACTS)
def test_out_of_catalogue_range_halts(safety_evaluator: SafetyEvaluator, fact: str) -> None:
    d = decide(safety_evaluator, snapshot(**{fact: OUT_OF_RANGE[fact]}))
    assert d.action is Action.HALT
    assert d.deciding_rule is not None
    assert d.deciding_rule.rule == f"fact-invalid:{fact}"
    assert [f.fact for f in d.findings] == [fact]
    assert "range" in d.findings[0].detail


def test_volatility_written_as_percent_is_invalid(safety_evaluator: SafetyEvaluator) -> None:
    d = decide(safety_evaluator, snapshot(volatility=35))
    assert d.deciding_rule is not None
    assert d.deciding_rule.rule == "fact-invalid:volatility"
    assert "35" in d.findings[0].detail


def test_fact_exactly_max_age_old_is_fresh(safety_evaluator: SafetyEvaluator) -> None:
    d = decide(safety_evaluator, snapshot(volatility={"value": 0.12, "as_of": ONE_DAY_OLD}))
    assert d.action is Action.ALLOW
    assert d.findings == ()


def test_stale_fact_names_its_age(safety_evaluator: SafetyEvaluator) -> None:
    d = decide(safety_evaluator,
               snapshot(frs={"value": 0.9, "as_of": "2025-03-01T15:30:00Z"}))
    assert d.deciding_rule is not None
    assert d.deciding_rule.rule == "fact-stale:frs"
    assert "3d" in d.findings[0].detail
    assert "1d" in d.findings[0].detail


@pytest.mark.parametrize(
    ("case", "changes", "rule"),
    [
        ("naive-ts", {"ts": "2025-03-04T15:30:00"}, "fact-invalid:ts"),
        ("non-utc-ts", {"ts": "2025-03-04T15:30:00+02:00"}, "fact-invalid:ts"),
        ("garbage-ts", {"ts": "last tuesday"}, "fact-invalid:ts"),
        ("number-ts", {"ts": 1741102200}, "fact-invalid:ts"),
        ("missing-ts", {"ts": MISSING}, "fact-missing:ts"),
        ("null-ts", {"ts": None}, "fact-missing:ts"),
        ("missing-symbol", {"symbol": MISSING}, "fact-missing:symbol"),
        ("null-symbol", {"symbol": None}, "fact-missing:symbol"),
        ("empty-symbol", {"symbol": "  "}, "fact-invalid:symbol"),
        ("number-symbol", {"symbol": 500}, "fact-invalid:symbol"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_bad_envelope_halts(safety_evaluator: SafetyEvaluator, case: str,
                            changes: dict[str, Any], rule: str) -> None:
    d = decide(safety_evaluator, snapshot(**changes))
    assert d.action is Action.HALT
    assert d.deciding_rule is not None
    assert d.deciding_rule.rule == rule
    # No rule reads the envelope: every rule needed it, and the record points at the first
    # rule of the policy, where a reader of the file starts.
    assert d.deciding_rule.source == f"{SAFETY_YAML}:{safety_rule_line('drift-spike-halt')}:7"
    assert d.deciding_rule.version == safety_evaluator.policy_set.versions()["core-safety"]
    (finding,) = (f for f in d.to_json()["findings"] if f["rule"] == rule)
    assert finding["needed_by"] == ["*"]


def test_dated_fact_with_unusable_ts_halts(safety_evaluator: SafetyEvaluator) -> None:
    d = decide(safety_evaluator, snapshot(ts="2025-03-04T15:30:00",
                                          volatility={"value": 0.1, "as_of": FRESH}))
    assert d.action is Action.HALT
    assert {f.rule for f in d.findings} == {"fact-invalid:ts", "fact-invalid:volatility"}


@pytest.mark.parametrize("raw", [None, [], [snapshot()], "SP500", 0.5, True],
                         ids=["null", "empty-list", "list", "string", "number", "bool"])
def test_snapshot_that_is_not_an_object_halts(safety_evaluator: SafetyEvaluator,
                                              raw: object) -> None:
    d = decide(safety_evaluator, raw)
    assert d.action is Action.HALT
    assert d.deciding_rule is not None
    assert d.deciding_rule.rule == "fact-invalid:snapshot"
    assert d.fired == ()


def test_bad_fact_with_a_firing_rail_still_halts(safety_evaluator: SafetyEvaluator) -> None:
    d = decide(safety_evaluator, snapshot(volatility=math.nan, coherence=0.2))
    assert d.action is Action.HALT
    assert [f.rule for f in d.fired] == ["coherence-break-block"]
    assert [f.rule for f in d.findings] == ["fact-invalid:volatility"]


# --- a policy that fails closed to something other than halt ------------------------------


def block_new_policy_text() -> str:
    text = SAFETY_YAML.read_text(encoding="utf-8")
    assert "fail_closed: halt" in text
    return (text.replace("fail_closed: halt", "fail_closed: block_new")
            .replace("name: core-safety", "name: soft-safety"))


def test_fail_closed_block_new(write_policy: WritePolicy) -> None:
    path = write_policy(block_new_policy_text(), "soft.yaml")
    evaluator = SafetyEvaluator(load_policy_set([str(path)]))
    try:
        missing = decide(evaluator, snapshot(volatility=MISSING))
        assert missing.action is Action.BLOCK_NEW
        assert missing.deciding_rule is not None
        assert missing.deciding_rule.rule == "fact-missing:volatility"
        assert missing.findings[0].action is Action.BLOCK_NEW

        envelope = decide(evaluator, snapshot(symbol=MISSING))
        assert envelope.action is Action.BLOCK_NEW
        assert envelope.deciding_rule is not None
        assert envelope.deciding_rule.rule == "fact-missing:symbol"

        drift = decide(evaluator, snapshot(volatility=MISSING, drift_score=0.9))
        assert drift.action is Action.HALT
        assert drift.deciding_rule is not None
        assert drift.deciding_rule.rule == "drift-spike-halt"
        assert [f.rule for f in drift.findings] == ["fact-missing:volatility"]

        # a weaker rail firing does not lower the fail-closed action
        weak = decide(evaluator, snapshot(volatility=MISSING, frs=0.1))
        assert weak.action is Action.BLOCK_NEW
        assert weak.deciding_rule is not None
        assert weak.deciding_rule.rule == "fact-missing:volatility"
        assert [f.rule for f in weak.fired] == ["low-confidence-wait"]
    finally:
        evaluator.close()


def test_fail_closed_weaker_than_block_new_is_refused(write_policy: WritePolicy,
                                                     run_cli: RunCli) -> None:
    """A wait_confirmation fail-closed action would let a NaN fact become an order after one
    approval: the floor is block_new, in the engine and in the schema editors read."""
    text = block_new_policy_text()
    line = 1 + text.splitlines().index("  fail_closed: block_new")
    path = write_policy(text.replace("fail_closed: block_new", "fail_closed: wait_confirmation"),
                        "soft.yaml")
    proc = run_cli("validate", str(path))
    assert proc.returncode == 1
    assert f"{path}:{line}:16: spec.fail_closed: 'wait_confirmation' is too weak" in proc.stderr
    assert "write one of: halt, flatten, block_new" in proc.stderr
    schema_floor = validator("policy").schema["$defs"]["failClosedAction"]["enum"]
    assert schema_floor == [a.value for a in Action
                            if a.severity >= FAIL_CLOSED_FLOOR.severity]


@pytest.mark.parametrize("command", ["eval", "explain", "step"])
def test_empty_facts_input_is_a_failure(run_cli: RunCli, tmp_path: Path, command: str) -> None:
    """A dead upstream feed gives an empty file: deciding nothing is not a success."""
    empty = tmp_path / "facts.jsonl"
    empty.write_text("\n", encoding="utf-8")
    extra = {"eval": ["--audit", str(tmp_path / "a.db")], "explain": [],
             "step": ["--audit", str(tmp_path / "a.db"), "--broker", str(tmp_path / "b.db")]}
    proc = run_cli(command, "--policies", str(SAFETY_YAML), "--facts", str(empty),
                   *extra[command], cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout
    assert f"{empty}: no snapshot: the facts input is empty" in proc.stderr
    assert not (tmp_path / "a.db").exists()


def test_empty_facts_on_stdin_is_a_failure(run_cli: RunCli, tmp_path: Path) -> None:
    proc = run_cli("eval", "--policies", str(SAFETY_YAML), "--audit", str(tmp_path / "a.db"),
                   stdin="")
    assert proc.returncode == 1
    assert "stdin: no snapshot: the facts input is empty" in proc.stderr
    assert "decision" not in proc.stdout


# --- property: nothing but valid facts and quiet rails allow -----------------------------


RANGES = {"drift_score": (0.0, 1.0), "volatility": (0.0, 5.0), "coherence": (0.0, 1.0),
          "frs": (0.0, 1.0), "meta_reliability": (0.0, 1.0)}
EDGES = [0, 1, 0.0, 1e-7, 0.3499999, 0.35, 0.3999999, 0.4, 0.5, 0.5000001, 0.7999999, 0.8, 1.0]


def valid_number(fact: str) -> st.SearchStrategy[float]:
    lo, hi = RANGES[fact]
    return st.one_of(st.floats(lo, hi, allow_nan=False, allow_infinity=False),
                     st.sampled_from([e for e in EDGES if lo <= e <= hi]))


def valid_entry(fact: str) -> st.SearchStrategy[tuple[Any, float | None]]:
    """A valid fact and the number it stands for."""
    plain = valid_number(fact).map(lambda v: (v, v))
    dated = st.tuples(valid_number(fact), st.sampled_from([FRESH, ONE_DAY_OLD, TS])).map(
        lambda p: ({"value": p[0], "as_of": p[1]}, p[0]))
    return st.one_of(plain, dated)


def garbage_entry(fact: str) -> st.SearchStrategy[tuple[Any, float | None]]:
    lo, hi = RANGES[fact]
    junk = st.one_of(
        st.sampled_from([MISSING, None, math.nan, math.inf, -math.inf, "", "0.5", "NaN", True,
                         False, [], [0.5], {}, {"as_of": FRESH}, {"value": None},
                         {"value": 0.5, "as_of": STALE}, {"value": 0.5, "as_of": FUTURE},
                         {"value": 0.5, "as_of": NAIVE}, {"value": 0.5, "extra": 1},
                         {"value": "0.5"}, OUT_OF_RANGE[fact]]),
        st.floats(min_value=hi + 1e-9, allow_nan=False),
        st.floats(max_value=lo - 1e-9, allow_nan=False),
        st.text(max_size=5),
    )
    return junk.map(lambda v: (v, None))


ENVELOPES: st.SearchStrategy[tuple[dict[str, Any], bool]] = st.sampled_from([
    ({"ts": TS, "symbol": "SP500"}, True),
    ({"ts": "2025-03-04T15:30:00+00:00", "symbol": "WTI"}, True),
    ({"ts": TS, "symbol": "SP500"}, True),
    ({"ts": "2025-03-04T15:30:00", "symbol": "SP500"}, False),
    ({"symbol": "SP500"}, False),
    ({"ts": TS}, False),
    ({"ts": TS, "symbol": ""}, False),
    ({"ts": None, "symbol": 7}, False),
])


@st.composite
def snapshots(draw: st.DrawFn) -> tuple[dict[str, Any], bool, dict[str, float | None]]:
    envelope, envelope_ok = draw(ENVELOPES)
    snap: dict[str, Any] = dict(envelope)
    numbers: dict[str, float | None] = {}
    for fact in FACTS:
        entry, number = draw(st.one_of(valid_entry(fact), garbage_entry(fact)))
        numbers[fact] = number
        if entry is not MISSING:
            snap[fact] = entry
    return snap, envelope_ok, numbers


def expected_rails(v: dict[str, float]) -> dict[str, Action]:
    out: dict[str, Action] = {}
    if v["drift_score"] >= 0.8:
        out["drift-spike-halt"] = Action.HALT
    if v["volatility"] >= 0.35:
        out["high-volatility-flatten"] = Action.FLATTEN
    if v["coherence"] <= 0.5:
        out["coherence-break-block"] = Action.BLOCK_NEW
    if v["frs"] < 0.4 or v["meta_reliability"] < 0.4:
        out["low-confidence-wait"] = Action.WAIT_CONFIRMATION
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=snapshots())
def test_random_snapshots_never_allow_unless_valid_and_quiet(
        safety_evaluator: SafetyEvaluator,
        case: tuple[dict[str, Any], bool, dict[str, float | None]]) -> None:
    snap, envelope_ok, numbers = case
    d = decide(safety_evaluator, snap)
    bad = {f for f, n in numbers.items() if n is None}
    if not envelope_ok or bad:
        assert d.action is Action.HALT
        assert d.deciding_rule is not None
        assert d.deciding_rule.rule.startswith("fact-")
        assert d.deciding_rule.rule in {f.rule for f in d.findings}
        if envelope_ok:
            assert {f.fact for f in d.findings} == bad
        return
    values = {f: n for f, n in numbers.items() if n is not None}
    rails = expected_rails(values)
    assert d.findings == ()
    assert {f.rule for f in d.fired} == set(rails)
    assert d.action is most_restrictive(rails.values())
    assert (d.action is Action.ALLOW) is (not rails)


# --- facts that are not numbers, and the rule engine failing --------------------------------


FLAG_POLICY = """\
apiVersion: fuggerbot/v1
kind: SafetyPolicy
metadata: {name: flag-safety, version: 1.0.0}
spec:
  rules:
    - id: empty-book-block
      when: {fact: book_empty, op: "==", value: true}
      action: block_new
    - id: stale-book-block
      when: {fact: days_since_rebalance, op: ">", value: 400}
      action: block_new
    - id: halted-symbol-halt
      when: {fact: safety_action, op: "==", value: halt}
      action: halt
"""
FLAG_CALM: dict[str, Any] = {"ts": TS, "symbol": "SP500", "book_empty": False,
                             "days_since_rebalance": 10, "safety_action": "allow"}


@pytest.mark.parametrize(("fact", "bad"), [("book_empty", 0.7), ("book_empty", 1.0),
                                           ("days_since_rebalance", 2.5),
                                           ("safety_action", 0.7)])
def test_a_float_for_a_fact_that_is_not_a_number_halts(write_policy: WritePolicy, fact: str,
                                                       bad: float) -> None:
    """A flag, a whole number or a word given as a plain float is invalid, not a pass: the
    policy's rules must never see it as a value."""
    evaluator = SafetyEvaluator(load_policy_set([str(write_policy(FLAG_POLICY))]))
    try:
        assert decide(evaluator, FLAG_CALM).action is Action.ALLOW
        d = decide(evaluator, {**FLAG_CALM, fact: bad})
        assert d.action is Action.HALT
        assert d.deciding_rule is not None
        assert d.deciding_rule.rule == f"fact-invalid:{fact}"
        assert [f.problem for f in d.findings] == ["invalid"]
    finally:
        evaluator.close()


def test_a_rule_engine_that_fails_mid_decision_fails_closed(write_policy: WritePolicy) -> None:
    """durable-rules refusing a snapshot (here: its rulesets are gone, as after a reload that
    closed them while a decision was still made on the old ones) yields the policy's
    fail-closed action, named `engine-error`, never an allow."""
    for text, action in ((SAFETY_YAML.read_text(encoding="utf-8"), Action.HALT),
                         (block_new_policy_text(), Action.BLOCK_NEW)):
        evaluator = SafetyEvaluator(load_policy_set([str(write_policy(text, "p.yaml"))]))
        name = evaluator.policy_set.of_kind("SafetyPolicy")[0].name
        assert decide(evaluator, snapshot()).action is Action.ALLOW
        evaluator.close()
        d = decide(evaluator, snapshot())
        assert d.action is action
        assert d.deciding_rule is not None
        assert d.deciding_rule.rule == f"engine-error:{name}"
        (finding,) = d.findings
        assert (finding.fact, finding.problem, finding.action) == ("*", "engine-error", action)
        assert "durable-rules" in finding.detail
        assert d.fired == ()


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(st.floats(), st.integers(min_value=-2**60, max_value=2**60),
                       st.booleans(), st.none(), st.text(max_size=20),
                       st.sampled_from(["allow", "halt", "wait_confirmation", 2**53 - 1, 2**53,
                                        -(2**53), 0.5, 1.0, 1e16, math.inf, math.nan])),
       name=st.sampled_from(sorted(CATALOGUE)))
def test_the_quick_check_of_a_fact_accepts_only_what_the_full_check_accepts(
        value: object, name: str) -> None:
    """Order and approval facts take a quick check first (every order is judged); whatever it
    lets through, the full check would have let through too."""
    spec = CATALOGUE[name]
    if quick_check(spec)(value):
        assert type_problem(spec, value) == "", (name, value)


def test_the_quick_check_leaves_the_unusual_to_the_full_check() -> None:
    """Wrong types, NaN, infinities, out-of-range and inexact values are never quick."""
    for name, bad in (("order_shares", 1.5), ("order_shares", True), ("order_shares", 2**53),
                      ("price_deviation", math.nan), ("price_deviation", math.inf),
                      ("price_deviation", -0.1), ("order_opens", 1), ("order_notional", "5"),
                      ("safety_action", "sideways")):
        assert not quick_check(CATALOGUE[name])(bad), (name, bad)
        assert type_problem(CATALOGUE[name], bad) != "", (name, bad)


def test_an_engine_failure_is_named_for_every_safety_policy(write_policy: WritePolicy) -> None:
    """With two safety policies and the rule engine failing on both, each names its own
    engine error: the second policy is still tried, never skipped after the first."""
    second = """\
apiVersion: fuggerbot/v1
kind: SafetyPolicy
metadata: {name: desk-safety, version: 1.0.0}
spec:
  rules:
    - id: desk-drift-halt
      when: {fact: drift_score, op: ">=", value: 0.5}
      action: halt
"""
    evaluator = SafetyEvaluator(load_policy_set([
        str(write_policy(SAFETY_YAML.read_text(encoding="utf-8"), "a.yaml")),
        str(write_policy(second, "b.yaml"))]))
    evaluator.close()
    d = decide(evaluator, snapshot())
    assert d.action is Action.HALT
    assert [f.rule for f in d.findings] == ["engine-error:core-safety",
                                            "engine-error:desk-safety"]
