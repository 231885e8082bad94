"""`fugger lint`: interval analysis of conditions and the findings built on it."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.policy.loader import load_policy_set
from engine.policy.model import AllOf, AnyOf, Condition, Leaf, NotOf, Op, Scalar
from engine.policy.problems import Position
from engine.rules.reference import holds
from engine.tooling.lint import lint
from engine.tooling.value_sets import Box, Interval, ValueSet, dnf, implies, satisfiable
from tests.conftest import REPO_ROOT, RunCli

POLICIES = REPO_ROOT / "policies"
P = Position("t.yaml", 1, 1)

SAFETY = """\
apiVersion: fuggerbot/v1
kind: SafetyPolicy
metadata: {{name: crafted-safety, version: 1.0.0}}
spec:
  rules:
{rules}
"""


def rule(rid: str, when: str, action: str) -> str:
    return f"    - id: {rid}\n      when: {when}\n      action: {action}\n"


def safety_dir(tmp_path: Path, *rules: str, tests: str | None = None) -> Path:
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "safety.yaml").write_text(SAFETY.format(rules="".join(rules)), encoding="utf-8")
    if tests is not None:
        (folder / "tests").mkdir()
        (folder / "tests" / "cases.yaml").write_text(tests, encoding="utf-8")
    return folder


# --- the analysis ----------------------------------------------------------------------------


def leaf(fact: str, op: Op, value: Scalar | tuple[Scalar, ...]) -> Leaf:
    return Leaf(fact, op, value, P)


def test_intervals_respect_open_ends_and_whole_numbers() -> None:
    assert Interval(0.5, True, 0.5, True).empty is False
    assert Interval(0.5, False, 0.5, True).empty is True
    assert Interval(3, False, 4, False, integer=True).empty is True
    assert Interval(3, True, 4, False, integer=True).empty is False
    assert Interval(0, True, 1, True).covers(Interval(0.2, False, 1, True))
    assert not Interval(0, False, 1, True).covers(Interval(0, True, 1, True))
    assert ValueSet(frozenset({"a"}), True).intersect(ValueSet(frozenset({"a", "b"}))) == \
        ValueSet(frozenset({"b"}))


def test_dead_conditions() -> None:
    assert satisfiable(AllOf((leaf("drift_score", ">=", 0.8), leaf("drift_score", "<", 0.5)),
                             P)) is False
    assert satisfiable(leaf("drift_score", ">", 1)) is False  # outside the catalogue range
    assert satisfiable(AllOf((leaf("days_since_rebalance", ">", 3),
                              leaf("days_since_rebalance", "<", 4)), P)) is False
    assert satisfiable(AllOf((leaf("safety_action", "in", ("halt", "allow")),
                              leaf("safety_action", "not_in", ("halt", "allow"))), P)) is False
    assert satisfiable(AllOf((leaf("book_empty", "==", True),
                              NotOf(leaf("book_empty", "!=", False), P)), P)) is False
    assert satisfiable(leaf("drift_score", ">=", 1)) is True


def test_implication_is_certain_only() -> None:
    assert implies(leaf("drift_score", ">=", 0.9), leaf("drift_score", ">", 0.8))
    assert not implies(leaf("drift_score", ">=", 0.8), leaf("drift_score", ">", 0.8))
    # the other rule reads a fact this one does not: it could be missing, so nothing is certain
    assert not implies(leaf("drift_score", ">=", 0.9),
                       AnyOf((leaf("drift_score", ">", 0.8), leaf("frs", ">=", 0)), P))
    assert implies(AllOf((leaf("drift_score", ">=", 0.9), leaf("frs", "<", 0.2)), P),
                   AnyOf((leaf("drift_score", ">", 0.8), leaf("frs", "<", 0.1)), P))


NUMBERS = [0.0, 0.25, 0.5, 0.75, 1.0]
DAYS = [0, 1, 2, 3, 4]
ACTIONS = ["halt", "flatten", "block_new", "wait_confirmation", "allow"]


def _leaves() -> st.SearchStrategy[Condition]:
    order_ops = st.sampled_from(["<", "<=", ">", ">=", "==", "!="])
    return st.one_of(
        st.builds(leaf, st.just("drift_score"), order_ops, st.sampled_from(NUMBERS)),
        st.builds(leaf, st.just("drift_score"), st.sampled_from(["in", "not_in"]),
                  st.lists(st.sampled_from(NUMBERS), min_size=1, max_size=3).map(tuple)),
        st.builds(leaf, st.just("days_since_rebalance"), order_ops, st.sampled_from(DAYS)),
        st.builds(leaf, st.just("book_empty"), st.sampled_from(["==", "!="]), st.booleans()),
        st.builds(leaf, st.just("safety_action"), st.sampled_from(["in", "not_in"]),
                  st.lists(st.sampled_from(ACTIONS), min_size=1, max_size=3).map(tuple)),
        st.builds(leaf, st.just("safety_action"), st.sampled_from(["==", "!="]),
                  st.sampled_from(ACTIONS)),
    )


CONDITIONS = st.recursive(_leaves(), lambda inner: st.one_of(
    st.builds(lambda xs: AllOf(tuple(xs), P), st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda xs: AnyOf(tuple(xs), P), st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda x: NotOf(x, P), inner),
), max_leaves=8)

VALUES = st.fixed_dictionaries({
    "drift_score": st.sampled_from(NUMBERS), "days_since_rebalance": st.sampled_from(DAYS),
    "book_empty": st.booleans(), "safety_action": st.sampled_from(ACTIONS),
})


def _contains(box: Box, values: dict[str, Scalar]) -> bool:
    for fact, d in box.items():
        v = values[fact]
        if isinstance(d, Interval):
            assert not isinstance(v, (str, bool))
            if not (d.lo < v or (d.lo_closed and d.lo == v)):
                return False
            if not (v < d.hi or (d.hi_closed and d.hi == v)):
                return False
        elif (v in d.values) == d.cofinite:
            return False
    return True


@settings(max_examples=300, deadline=None)
@given(CONDITIONS, VALUES)
def test_boxes_hold_exactly_where_the_reference_evaluation_does(
        cond: Condition, values: dict[str, Scalar]) -> None:
    expected = holds(cond, values)
    assert any(_contains(b, values) for b in dnf(cond)) is expected
    assert any(_contains(b, values) for b in dnf(cond, negate=True)) is (not expected)


# --- findings through the command line --------------------------------------------------------


def test_default_policies_lint_clean(run_cli: RunCli) -> None:
    proc = run_cli("lint", "policies")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 error(s), 0 warning(s) in 5 policies" in proc.stdout
    assert lint(load_policy_set([str(POLICIES)])) == []


def test_dead_rule_is_an_error(tmp_path: Path, run_cli: RunCli) -> None:
    folder = safety_dir(tmp_path, rule(
        "never", '{all: [{fact: drift_score, op: ">=", value: 0.8}, '
                 '{fact: drift_score, op: "<", value: 0.5}]}', "halt"),
        rule("fine", '{fact: frs, op: "<", value: 0.4}', "wait_confirmation"))
    proc = run_cli("lint", str(folder))
    assert proc.returncode == 1
    assert (f"{folder / 'safety.yaml'}:6:7: error: rule 'never' can never fire: no valid "
            "values make (drift_score >= 0.8 and drift_score < 0.5) true [dead-rule]"
            ) in proc.stdout
    assert "1 error(s), 0 warning(s)" in proc.stdout


def test_shadowed_rule_names_both_rules(tmp_path: Path, run_cli: RunCli) -> None:
    folder = safety_dir(
        tmp_path,
        rule("halt-early", '{fact: drift_score, op: ">=", value: 0.5}', "halt"),
        rule("block-later", '{all: [{fact: drift_score, op: ">=", value: 0.7}, '
                            '{fact: drift_score, op: "<=", value: 0.9}]}', "block_new"),
        rule("block-coherence", '{fact: coherence, op: "<=", value: 0.5}', "block_new"),
        rule("wait-coherence", '{fact: coherence, op: "<", value: 0.3}', "block_new"))
    proc = run_cli("lint", str(folder))
    assert proc.returncode == 0, proc.stdout
    f = folder / "safety.yaml"
    assert (f"{f}:9:7: warning: rule 'block-later' can never decide: rule 'halt-early' at "
            f"{f}:6:7 fires whenever it fires and its action halt is more restrictive than "
            "block_new") in proc.stdout
    # equal action: the rule that comes first decides
    assert (f"{f}:15:7: warning: rule 'wait-coherence' can never decide: rule "
            f"'block-coherence' at {f}:12:7 fires whenever it fires and it comes first with "
            "the same action block_new") in proc.stdout
    assert "0 error(s), 2 warning(s)" in proc.stdout


def test_same_condition_different_action_is_an_error(tmp_path: Path, run_cli: RunCli) -> None:
    folder = safety_dir(
        tmp_path,
        rule("frs-wait", '{fact: frs, op: "<", value: 0.4}', "wait_confirmation"),
        rule("frs-block", '{not: {fact: frs, op: ">=", value: 0.4}}', "block_new"))
    proc = run_cli("lint", str(folder), "--format", "json")
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    dupes = [f for f in doc["findings"] if f["code"] == "duplicate-condition"]
    assert len(dupes) == 1
    f = folder / "safety.yaml"
    assert (dupes[0]["file"], dupes[0]["line"], dupes[0]["severity"]) == (str(f), 9, "error")
    assert dupes[0]["related"] == [f"{f}:6:7"]
    assert "'frs-wait'" in dupes[0]["message"] and "wait_confirmation" in dupes[0]["message"]
    # the same pair is not reported a second time as shadowing
    assert [x["code"] for x in doc["findings"]] == ["duplicate-condition"]


def test_untested_rule_warns(tmp_path: Path, run_cli: RunCli) -> None:
    tests = """\
cases:
  - name: drift halts
    facts: {ts: "2024-01-02T21:00:00Z", symbol: SPY, drift_score: 0.9, frs: 0.9}
    expect: {action: halt, rule: drift-halt}
"""
    folder = safety_dir(tmp_path,
                        rule("drift-halt", '{fact: drift_score, op: ">=", value: 0.8}', "halt"),
                        rule("frs-wait", '{fact: frs, op: "<", value: 0.4}',
                             "wait_confirmation"),
                        tests=tests)
    proc = run_cli("lint", str(folder))
    assert proc.returncode == 0
    assert (f"{folder / 'safety.yaml'}:9:7: warning: rule 'frs-wait' has no test case"
            ) in proc.stdout
    assert "drift-halt' has no test case" not in proc.stdout
    # an explicit --tests elsewhere; and a broken test file is an error
    other = tmp_path / "other"
    other.mkdir()
    (other / "t.yaml").write_text("cases:\n  - name: x\n", encoding="utf-8")
    broken = run_cli("lint", str(folder), "--tests", str(other))
    assert broken.returncode == 1
    assert f"{other / 't.yaml'}:2:5: error: case 'x': missing required key 'facts'" \
           in broken.stdout


ROTATION = """\
apiVersion: fuggerbot/v1
kind: RotationPolicy
metadata: {name: rotation, version: 1.0.0}
spec:
  construction:
    eligibility: {min_expected_return: 0.0, min_frs: 0.3}
  sizing: {min_trade_notional: 1000}
  band: 0.05
  rules:
    - id: weight-band-breach
      when: {fact: weight_drift, op: ">", value: 0.04}
      action: rebalance
"""

APPROVAL = """\
apiVersion: fuggerbot/v1
kind: ApprovalPolicy
metadata: {name: approval, version: 1.0.0}
spec:
  mode: semi_autonomous
  rules:
    - id: every-order
      when: {fact: order_notional, op: ">", value: 500}
      action: require_approval
    - id: large-opening-order
      when:
        all:
          - {fact: order_notional, op: ">", value: 250}
          - {fact: order_opens, op: "==", value: true}
      action: require_approval
"""


def test_threshold_conflicts_across_policies(tmp_path: Path, run_cli: RunCli) -> None:
    folder = safety_dir(tmp_path,
                        rule("frs-wait", '{any: [{fact: frs, op: "<", value: 0.4}, '
                                         '{fact: meta_reliability, op: "<", value: 0.4}]}',
                             "wait_confirmation"),
                        rule("return-block", '{all: [{fact: expected_return, op: "<", '
                                             'value: 0.1}, {fact: frs, op: "<", value: 0.5}]}',
                             "block_new"))
    (folder / "rotation.yaml").write_text(ROTATION, encoding="utf-8")
    (folder / "approval.yaml").write_text(APPROVAL, encoding="utf-8")
    proc = run_cli("lint", str(folder))
    assert proc.returncode == 0, proc.stdout
    rotation, approval, safety = (folder / n for n in ("rotation.yaml", "approval.yaml",
                                                       "safety.yaml"))
    assert (f"{rotation}:6:54: warning: rotation eligibility frs >= 0.3 admits frs in "
            f"[0.3, 0.4), where safety rule 'frs-wait' at {safety}:6:7 (wait_confirmation) "
            "fires: such symbols get targets, but every order that opens them is held "
            "[threshold-conflict]") in proc.stdout
    assert (f"{rotation}:10:7: warning: rule 'weight-band-breach' fires on weight_drift in "
            f"(0.04, 0.05], inside the band 0.05 a rebalance leaves (at {rotation}:8:9)"
            ) in proc.stdout
    assert (f"{approval}:7:7: warning: rule 'every-order' requires approval for "
            "order_notional in (500, inf), which covers every order the rotation places "
            f"(min_trade_notional 1000 at {rotation}:7:32)") in proc.stdout
    # a rule that reads other facts too is not certain to fire on these values alone
    assert "return-block" not in proc.stdout and "large-opening-order" not in proc.stdout
    assert "0 error(s), 3 warning(s)" in proc.stdout
