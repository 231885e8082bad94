"""`fugger test`: policy test cases, their validation, running them and rule coverage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.policy.loader import load_policy_set, policy_set_from_texts
from engine.tooling.cases import CaseError, load_cases, parse_cases
from engine.tooling.runner import CaseRunner, coverage
from tests.conftest import REPO_ROOT, RunCli

POLICIES = REPO_ROOT / "policies"
TESTS = POLICIES / "tests"

SAFETY = """\
apiVersion: fuggerbot/v1
kind: SafetyPolicy
metadata: {name: core-safety, version: 2.0.0}
spec:
  fail_closed: halt
  max_fact_age: 1d
  rules:
    - id: drift-spike-halt
      when: {fact: drift_score, op: ">=", value: 0.8}
      action: halt
    - id: high-volatility-flatten
      when: {fact: volatility, op: ">=", value: 0.35}
      action: flatten
    - id: coherence-break-block
      when: {fact: coherence, op: "<=", value: 0.5}
      action: block_new
    - id: low-confidence-wait
      when:
        any:
          - {fact: frs, op: "<", value: 0.4}
          - {fact: meta_reliability, op: "<", value: 0.4}
      action: wait_confirmation
"""

ROTATION = """\
apiVersion: fuggerbot/v1
kind: RotationPolicy
metadata: {name: rotation, version: 1.0.0}
spec:
  rules:
    - id: weight-band-breach
      when: {fact: weight_drift, op: ">", value: 0.05}
      action: rebalance
    - id: relative-band-breach
      when: {fact: relative_drift, op: ">", value: 0.25}
      action: rebalance
"""

SNAP = ('ts: "2024-01-02T21:00:00Z", symbol: SPY, volatility: 0.1, coherence: 0.9, frs: 0.9, '
        'meta_reliability: 0.9')

ONE_PASS_ONE_FAIL = f"""\
cases:
  - name: drift at the threshold halts
    facts: {{{SNAP}, drift_score: 0.8}}
    expect: {{action: halt, rule: drift-spike-halt, fired: [drift-spike-halt]}}
  - name: wrongly expected to allow
    facts: {{{SNAP}, drift_score: 0.9}}
    expect: {{action: allow, rule: null}}
"""

APPROVAL = """\
apiVersion: fuggerbot/v1
kind: ApprovalPolicy
metadata: {{name: approvals, version: 1.0.0}}
spec:
  mode: {mode}
  rules:
    - id: large-order-approval
      when: {{fact: order_notional, op: ">", value: 250000}}
      action: require_approval
"""

BIG_ORDER = """\
cases:
  - name: big order
    kind: approval
    order: {order_notional: 300000, symbol_held: true, order_opens: true, safety_action: allow}
    expect: {action: require_approval, rule: large-order-approval}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def safety(tmp_path: Path) -> Path:
    """A directory holding only the crafted safety policy (4 rules)."""
    write(tmp_path / "policies" / "safety.yaml", SAFETY)
    return tmp_path / "policies"


# --- the shipped cases ---------------------------------------------------------------------


def test_shipped_cases_pass_with_full_coverage(run_cli: RunCli) -> None:
    proc = run_cli("test", "policies/tests", "--min-coverage", "100")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    n = len(load_cases([str(TESTS)]))
    rules = sum(len(p.rules) for p in load_policy_set([str(POLICIES)]).policies)
    assert f"{n} passed, 0 failed" in proc.stdout
    assert f"rule coverage 100.0% ({rules}/{rules}) meets the minimum 100%" in proc.stdout


def test_shipped_cases_probe_both_sides_of_every_threshold() -> None:
    cases = load_cases([str(TESTS)])
    ps = load_policy_set([str(POLICIES)])
    runner = CaseRunner(ps)
    try:
        results = runner.run_all(cases)
    finally:
        runner.close()
    assert all(r.passed for r in results), [r.message() for r in results if not r.passed]
    assert coverage(ps, results).untested == ()
    rules = {r.got.rule for r in results}
    for fail_closed in ("fact-missing:drift_score", "fact-invalid:volatility",
                        "fact-stale:drift_score", "fact-missing:weight_drift",
                        "fact-missing:order_notional"):
        assert fail_closed in rules
    # every kind has cases where nothing fires as well as cases where a rule decides
    for kind, quiet in (("safety", "allow"), ("rotation", "none"), ("approval", "none")):
        assert any(r.case.kind == kind and r.got.action == quiet for r in results)


# --- failures and exit codes ------------------------------------------------------------------


def test_failing_case_prints_file_line_and_exits_1(tmp_path: Path, safety: Path,
                                                   run_cli: RunCli) -> None:
    cases = write(tmp_path / "cases.yaml", ONE_PASS_ONE_FAIL)
    proc = run_cli("test", str(cases), "--policies", str(safety))
    assert proc.returncode == 1
    assert (f"{cases}:5: case wrongly expected to allow: expected action allow rule -, got "
            "action halt rule drift-spike-halt") in proc.stdout
    assert "1 passed, 1 failed" in proc.stdout
    assert "drift at the threshold halts" not in proc.stdout


def test_fired_set_is_compared_exactly() -> None:
    case = parse_cases("c.yaml", f"""\
cases:
  - name: several rules
    facts: {{{SNAP.replace("coherence: 0.9", "coherence: 0.2")}, drift_score: 0.9}}
    expect: {{action: halt, rule: drift-spike-halt, fired: [drift-spike-halt]}}
""")[0]
    runner = CaseRunner(policy_set_from_texts([("safety.yaml", SAFETY)]))
    try:
        result = runner.run(case)
    finally:
        runner.close()
    assert result.message() == (
        "c.yaml:2: case several rules: expected fired [drift-spike-halt], got fired "
        "[coherence-break-block, drift-spike-halt]")


def test_invalid_case_files_name_file_line_col(tmp_path: Path, safety: Path,
                                               run_cli: RunCli) -> None:
    bad = write(tmp_path / "t" / "bad.yaml", """\
cases:
  - name: typo in kind
    kind: rotaton
    facts: {weight_drift: 0.1}
    expect: {action: rebalance}
  - name: no expectation
    facts: {drift_score: 0.1}
  - name: unknown key
    facts: {drift_score: 0.1}
    expect: {action: halt}
    expected: {action: halt}
  - name: wrong outcome for the kind
    kind: rotation
    facts: {weight_drift: 0.1}
    expect: {action: halt}
""")
    write(tmp_path / "t" / "syntax.yaml", "cases:\n  - name: [unclosed\n")
    proc = run_cli("test", str(tmp_path / "t"), "--policies", str(safety))
    assert proc.returncode == 1
    err = proc.stderr
    assert f"{bad}:3:11: case 'typo in kind': unknown kind 'rotaton'" in err
    assert f"{bad}:6:5: case 'no expectation': missing required key 'expect'" in err
    assert f"{bad}:11:5: case 'unknown key': unknown key 'expected'" in err
    assert f"{bad}:15:22: case 'wrong outcome for the kind': 'halt' is not an outcome of a " \
           "rotation case" in err
    assert f"{tmp_path / 't' / 'syntax.yaml'}:3:1: YAML syntax error" in err
    assert "no case was run" in err
    assert "passed" not in proc.stdout


def test_case_file_problems_collected_at_once() -> None:
    with pytest.raises(CaseError) as info:
        parse_cases("c.yaml", """\
cases:
  - name: a
    kind: approval
    facts: {order_notional: 1}
    expect: {action: none, fired: drift}
  - name: a
    facts: {}
    expect: {action: allow}
  - name: a
    facts: {}
    expect: {action: allow}
""")
    text = [str(p) for p in info.value.problems]
    assert "c.yaml:4:5: case 'a': approval cases give the order's facts under 'order'" in text
    assert any(t.startswith("c.yaml:5:35: case 'a': expect.fired must be a list") for t in text)
    assert "c.yaml:9:11: duplicate case name 'a' (first at line 6)" in text


def test_empty_and_missing_inputs(tmp_path: Path) -> None:
    empty = write(tmp_path / "empty.yaml", "\n")
    with pytest.raises(CaseError, match=f"{empty}:1:1: file is empty"):
        load_cases([str(empty)])
    with pytest.raises(CaseError, match="cannot read file"):
        load_cases([str(tmp_path / "nothing-here")])
    (tmp_path / "no-yaml").mkdir()
    with pytest.raises(CaseError, match="no test case files"):
        load_cases([str(tmp_path / "no-yaml")])


def test_unquoted_timestamp_reads_as_its_text() -> None:
    cases = parse_cases("c.yaml", f"""\
cases:
  - name: ts written bare
    facts: {{{SNAP.replace('"', '')}, drift_score: 0.1}}
    expect: {{action: allow}}
""")
    assert cases[0].facts["ts"] == "2024-01-02T21:00:00Z"
    assert cases[0].expect.check_rule is False


# --- coverage --------------------------------------------------------------------------------


def test_coverage_lists_counts_and_unexercised_rules(tmp_path: Path, safety: Path,
                                                     run_cli: RunCli) -> None:
    cases = write(tmp_path / "cases.yaml", ONE_PASS_ONE_FAIL.split("  - name: wrongly")[0])
    proc = run_cli("test", str(cases), "--coverage", "--policies", str(safety))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    drift = next(line for line in lines if line.strip().startswith("drift-spike-halt"))
    assert "1 case(s)" in drift and f"{safety / 'safety.yaml'}:8:7" in drift
    wait = next(line for line in lines if line.strip().startswith("low-confidence-wait"))
    assert "0 case(s)" in wait
    assert "rule coverage: 1/4 rules fired by some case (25.0%)" in proc.stdout
    unexercised = next(line for line in lines if line.startswith("not exercised"))
    assert unexercised == ("not exercised by any case: high-volatility-flatten, "
                           "coherence-break-block, low-confidence-wait")


def test_min_coverage_fails_below_and_passes_at_threshold(tmp_path: Path, safety: Path,
                                                          run_cli: RunCli) -> None:
    cases = write(tmp_path / "cases.yaml", ONE_PASS_ONE_FAIL.split("  - name: wrongly")[0])
    below = run_cli("test", str(cases), "--min-coverage", "26", "--policies", str(safety))
    assert below.returncode == 1
    assert "rule coverage 25.0% (1/4) below the minimum 26%" in below.stdout
    assert "1 passed, 0 failed" in below.stdout
    at = run_cli("test", str(cases), "--min-coverage", "25", "--policies", str(safety))
    assert at.returncode == 0
    assert "rule coverage 25.0% (1/4) meets the minimum 25%" in at.stdout


def test_json_report(tmp_path: Path, safety: Path, run_cli: RunCli) -> None:
    cases = write(tmp_path / "cases.yaml", ONE_PASS_ONE_FAIL)
    proc = run_cli("test", str(cases), "--format", "json", "--min-coverage", "20",
                   "--policies", str(safety))
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert (doc["passed"], doc["failed"]) == (1, 1)
    bad = next(r for r in doc["results"] if not r["passed"])
    assert bad["line"] == 5
    assert bad["expected"] == {"action": "allow", "rule": None}
    assert bad["got"] == {"action": "halt", "rule": "drift-spike-halt",
                          "fired": ["drift-spike-halt"]}
    assert doc["coverage"]["exercised"] == 1 and doc["coverage"]["total"] == 4
    assert doc["coverage"]["untested"] == ["high-volatility-flatten", "coherence-break-block",
                                           "low-confidence-wait"]
    assert doc["coverage_ok"] is True


# --- kinds -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "action", "rule"), [
    ("manual", "require_approval", "mode-manual"),
    ("autonomous", "none", None),
    ("semi_autonomous", "require_approval", "large-order-approval"),
])
def test_approval_cases_follow_the_mode(mode: str, action: str, rule: str | None) -> None:
    ps = policy_set_from_texts([("approval.yaml", APPROVAL.format(mode=mode))])
    runner = CaseRunner(ps)
    try:
        result = runner.run(parse_cases("c.yaml", BIG_ORDER)[0])
        small = parse_cases("c.yaml", BIG_ORDER.replace("300000", "1000"))[0]
        small_result = runner.run(small)
    finally:
        runner.close()
    assert (result.got.action, result.got.rule) == (action, rule)
    assert result.passed is (mode == "semi_autonomous")
    expected_small = "require_approval" if mode == "manual" else "none"
    assert small_result.got.action == expected_small


def test_rotation_fails_closed_to_hold() -> None:
    ps = policy_set_from_texts([("rotation.yaml", ROTATION)])
    case = parse_cases("c.yaml", """\
cases:
  - name: missing
    kind: rotation
    facts: {weight_drift: 0.2}
    expect: {action: hold, rule: "fact-missing:relative_drift"}
""")[0]
    runner = CaseRunner(ps)
    try:
        result = runner.run(case)
    finally:
        runner.close()
    assert result.passed, result.message()
    assert result.got.fired == ("weight-band-breach",)


def test_case_of_a_kind_the_set_lacks_fails() -> None:
    runner = CaseRunner(policy_set_from_texts([("safety.yaml", SAFETY)]))
    try:
        result = runner.run(parse_cases("c.yaml", BIG_ORDER)[0])
    finally:
        runner.close()
    assert result.message() == "c.yaml:2: case big order: the policy set has no ApprovalPolicy"
