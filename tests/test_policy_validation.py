"""Policy validation: every broken policy of the corpus is refused with the right position and
message, through the library and through `fugger validate`; valid policies load."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import SAFETY_YAML, RunCli, WritePolicy

from engine.evaluator import SafetyEvaluator
from engine.policy.loader import load_policy_set, policy_set_from_texts
from engine.policy.model import AlertSettings, AllOf, AnyOf, Leaf, NotOf, PolicySet
from engine.policy.problems import PolicyError, Problem
from engine.policy.yamlsource import MAX_BYTES

CORPUS = Path(__file__).resolve().parent / "broken_policies"
_EXPECT = re.compile(r"^# expect: (\d+):(\d+): (.+)$")


@dataclass(frozen=True)
class Expectation:
    line: int
    col: int
    text: str


def expectations(path: Path) -> list[Expectation]:
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _EXPECT.match(line)
        if m:
            found.append(Expectation(int(m.group(1)), int(m.group(2)), m.group(3).strip()))
    return found


CORPUS_FILES = sorted(CORPUS.glob("*.yaml"))


def problems_of(paths: list[Path]) -> tuple[Problem, ...]:
    with pytest.raises(PolicyError) as info:
        load_policy_set([str(p) for p in paths])
    return info.value.problems


def test_corpus_is_large_and_annotated() -> None:
    assert len(CORPUS_FILES) >= 15
    for path in CORPUS_FILES:
        assert expectations(path), f"{path.name} has no '# expect: LINE:COL: text' header"


@pytest.mark.parametrize("path", CORPUS_FILES, ids=[p.stem for p in CORPUS_FILES])
def test_broken_policy_is_reported_at_its_position(path: Path) -> None:
    problems = problems_of([path])
    assert problems, "a broken policy must be refused"
    assert all(p.pos.file == str(path) for p in problems)
    for exp in expectations(path):
        at = [p for p in problems if (p.pos.line, p.pos.col) == (exp.line, exp.col)]
        assert at, (f"nothing reported at {exp.line}:{exp.col}; got:\n"
                    + "\n".join(str(p) for p in problems))
        assert any(exp.text in p.message for p in at), (
            f"expected {exp.text!r} at {exp.line}:{exp.col}; got:\n"
            + "\n".join(str(p) for p in at))


def test_several_errors_are_all_reported_at_once() -> None:
    path = CORPUS / "several_errors.yaml"
    problems = problems_of([path])
    assert len(problems) == len(expectations(path)) == 5


def test_validate_command_on_the_corpus(run_cli: RunCli, tmp_path: Path) -> None:
    proc = run_cli("validate", str(CORPUS), cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout.strip() == ""
    lines = proc.stderr.splitlines()
    for path in CORPUS_FILES:
        for exp in expectations(path):
            prefix = f"{path}:{exp.line}:{exp.col}: "
            assert any(ln.startswith(prefix) and exp.text in ln for ln in lines), (
                f"missing {prefix}...{exp.text}")
    located = re.compile(r"^(.+\.yaml):(\d+):(\d+): \S")
    problem_lines = [ln for ln in lines if located.match(ln)]
    assert problem_lines
    # every file of the corpus is named, each problem on its own FILE:LINE:COL line
    named = {Path(m.group(1)).name for ln in problem_lines if (m := located.match(ln))}
    assert named == {p.name for p in CORPUS_FILES}


def test_unknown_fact_suggests_the_nearest_names() -> None:
    (problem,) = problems_of([CORPUS / "unknown_fact.yaml"])
    assert "did you mean drift_score" in problem.message


def test_percent_volatility_teaches_the_fraction() -> None:
    (problem,) = problems_of([CORPUS / "volatility_percent.yaml"])
    assert "0.35" in problem.message
    assert "3500%" in problem.message


def test_alias_bomb_is_refused_before_expansion() -> None:
    problems = problems_of([CORPUS / "alias_bomb.yaml"])
    messages = [p.message for p in problems]
    assert any("anchor" in m for m in messages)
    assert any("alias" in m for m in messages)
    # refused from the event stream: a bounded list, not one problem per expanded node
    assert len(problems) <= 100


RULE = """\
    - id: {rid}
      when: {{fact: drift_score, op: ">=", value: 0.8}}
      action: halt
"""


def policy_text(name: str, *rule_ids: str) -> str:
    return ("apiVersion: fuggerbot/v1\nkind: SafetyPolicy\nmetadata:\n"
            f"  name: {name}\n  version: 1.0.0\nspec:\n  rules:\n"
            + "".join(RULE.format(rid=r) for r in rule_ids))


def test_duplicate_rule_id_across_files(write_policy: WritePolicy) -> None:
    first = write_policy(policy_text("alpha", "shared-id", "alpha-only"), "a.yaml")
    second = write_policy(policy_text("beta", "beta-only", "shared-id"), "b.yaml")
    for paths in ([first.parent], [first, second]):
        with pytest.raises(PolicyError) as info:
            load_policy_set([str(p) for p in paths])
        (problem,) = info.value.problems
        # the second definition is the one reported, and it names the first
        assert (problem.pos.file, problem.pos.line, problem.pos.col) == (str(second), 11, 7)
        assert "duplicate rule id 'shared-id'" in problem.message
        assert f"{first}:8:7" in problem.message


def test_duplicate_rule_id_across_files_through_cli(write_policy: WritePolicy,
                                                    run_cli: RunCli) -> None:
    first = write_policy(policy_text("alpha", "shared-id"), "a.yaml")
    second = write_policy(policy_text("beta", "shared-id"), "b.yaml")
    proc = run_cli("validate", str(first.parent))
    assert proc.returncode == 1
    assert f"{second}:8:7: duplicate rule id 'shared-id'" in proc.stderr


def test_duplicate_policy_name_across_files(write_policy: WritePolicy) -> None:
    write_policy(policy_text("same-name", "one"), "a.yaml")
    second = write_policy(policy_text("same-name", "two"), "b.yaml")
    with pytest.raises(PolicyError) as info:
        load_policy_set([str(second.parent)])
    (problem,) = info.value.problems
    assert problem.pos.file == str(second)
    assert "same-name" in problem.message


def test_file_over_one_mebibyte_is_refused(write_policy: WritePolicy) -> None:
    head = policy_text("huge", "drift-spike-halt")
    filler = "# " + "x" * 98 + "\n"
    body = head + filler * (MAX_BYTES // len(filler) + 1)
    assert len(body.encode()) > MAX_BYTES
    path = write_policy(body, "huge.yaml")
    (problem,) = problems_of([path])
    assert (problem.pos.line, problem.pos.col) == (1, 1)
    assert "larger than 1024 KiB" in problem.message


def test_file_just_under_the_limit_loads(write_policy: WritePolicy) -> None:
    head = policy_text("big", "drift-spike-halt")
    filler = "# " + "x" * 98 + "\n"
    body = head + filler * ((MAX_BYTES - len(head)) // len(filler))
    assert len(body.encode()) <= MAX_BYTES
    ps = load_policy_set([str(write_policy(body, "big.yaml"))])
    assert [r.id for r in ps.policies[0].rules] == ["drift-spike-halt"]


def test_not_utf8_is_refused_with_position(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(policy_text("latin", "r").encode() + b"# caf\xe9\n")
    (problem,) = problems_of([path])
    assert (problem.pos.line, problem.pos.col) == (11, 6)
    assert "UTF-8" in problem.message


def test_empty_directory_and_empty_file(tmp_path: Path) -> None:
    (tmp_path / "none").mkdir()
    (problem,) = problems_of([tmp_path / "none"])
    assert "no policy files" in problem.message
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing here\n", encoding="utf-8")
    (problem,) = problems_of([empty])
    assert "empty" in problem.message


def test_missing_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    (problem,) = problems_of([missing])
    assert problem.pos.file == str(missing)
    assert "cannot read" in problem.message


def test_unreadable_inputs_through_cli(write_policy: WritePolicy, tmp_path: Path,
                                       run_cli: RunCli) -> None:
    huge = write_policy(policy_text("huge", "r") + "#" * (MAX_BYTES + 1), "huge.yaml")
    missing = tmp_path / "nope.yaml"
    proc = run_cli("validate", str(huge), str(missing))
    assert proc.returncode == 1
    assert f"{huge}:1:1: file is larger than" in proc.stderr
    assert f"{missing}:1:1: cannot read" in proc.stderr


# --- valid policies ------------------------------------------------------------------------

RICH_POLICY = """\
apiVersion: fuggerbot/v1
kind: SafetyPolicy
metadata:
  name: rich-safety
  version: 3.1.4-rc.1+build.7
  description: every kind of condition
  owner: risk
spec:
  fail_closed: block_new
  max_fact_age: 15m
  rules:
    - id: combined
      description: nested conditions
      when:
        all:
          - any:
              - {fact: drift_score, op: ">", value: 0.7}
              - {fact: volatility, op: ">=", value: 0.5}
          - not: {fact: book_empty, op: "==", value: true}
          - {fact: safety_action, op: in, value: [halt, flatten]}
          - {fact: days_since_rebalance, op: "<", value: 30}
      action: flatten
    - id: odd-action
      when: {fact: safety_action, op: not_in, value: [allow, wait_confirmation]}
      action: block_new
    - id: tiny
      when: {fact: frs, op: "!=", value: 1e-7}
      action: wait_confirmation
"""


def test_rich_valid_policy_loads(write_policy: WritePolicy) -> None:
    path = write_policy(RICH_POLICY, "rich.yaml")
    ps = load_policy_set([str(path)])
    (policy,) = ps.policies
    assert policy.version == "3.1.4-rc.1+build.7"
    assert policy.fail_closed == "block_new"
    assert policy.max_fact_age is not None
    assert policy.max_fact_age.total_seconds() == 900
    combined = policy.rules[0]
    assert combined.pos.line == 12
    assert combined.source == f"{path}:12:7"
    assert isinstance(combined.when, AllOf)
    assert isinstance(combined.when.items[0], AnyOf)
    assert isinstance(combined.when.items[1], NotOf)
    leaf = combined.when.items[2]
    assert isinstance(leaf, Leaf)
    assert leaf.value == ("halt", "flatten")
    assert combined.facts == ("drift_score", "volatility", "book_empty", "safety_action",
                              "days_since_rebalance")
    tiny = policy.rules[2].when
    assert isinstance(tiny, Leaf)
    assert tiny.value == 1e-7


def test_policy_set_from_texts_matches_files(write_policy: WritePolicy) -> None:
    path = write_policy(RICH_POLICY, "rich.yaml")
    from_files = load_policy_set([str(path)])
    again = policy_set_from_texts([(str(path), path.read_text(encoding="utf-8"))])
    assert again.hash == from_files.hash
    assert again.policies[0].rules == from_files.policies[0].rules


def test_policy_set_from_texts_reports_problems() -> None:
    bad = (CORPUS / "unknown_fact.yaml").read_text(encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        policy_set_from_texts([("recorded.yaml", bad)])
    (problem,) = info.value.problems
    assert str(problem).startswith("recorded.yaml:12:15: unknown fact")


def test_hash_changes_with_text(write_policy: WritePolicy) -> None:
    a = load_policy_set([str(write_policy(policy_text("h", "r"), "h.yaml"))])
    b = load_policy_set([str(write_policy(policy_text("h", "r") + "# note\n", "h.yaml"))])
    assert a.hash != b.hash
    assert len(a.hash) == 64


def test_default_policy_is_valid() -> None:
    ps = load_policy_set([str(SAFETY_YAML)])
    assert ps.versions() == {"core-safety": "2.1.0"}


def test_validate_command_accepts_valid_policies(write_policy: WritePolicy, safety_dir: Path,
                                                 run_cli: RunCli) -> None:
    write_policy(RICH_POLICY, "rich.yaml")
    proc = run_cli("validate", str(safety_dir))
    assert proc.returncode == 0, proc.stderr
    assert "ok" in proc.stdout
    assert "core-safety 2.1.0" in proc.stdout
    assert "rich-safety 3.1.4-rc.1+build.7" in proc.stdout
    assert "2 policies valid" in proc.stdout
    assert proc.stderr == ""


# --- inputs built to exhaust the loader ----------------------------------------------------


def nested_not_policy(depth: int) -> str:
    leaf = '{fact: drift_score, op: ">=", value: 0.8}'
    return ("apiVersion: fuggerbot/v1\nkind: SafetyPolicy\nmetadata:\n  name: deep\n"
            "  version: 1.0.0\nspec:\n  rules:\n    - id: deep\n      action: halt\n"
            "      when: " + "{not: " * depth + leaf + "}" * depth + "\n")


def load_outcome(path: Path) -> PolicySet | PolicyError:
    """What loading `path` ends in: a policy set or the problems found. Anything else is a
    crash of the loader, reported without the (very deep) traceback of a recursion."""
    crash = ""
    try:
        return load_policy_set([str(path)])
    except PolicyError as e:
        return e
    except Exception as e:
        crash = f"{type(e).__name__}: {e}"
    pytest.fail(f"load_policy_set crashed on {path.name}: {crash}", pytrace=False)


@pytest.mark.parametrize("depth", [20, 150, 400])
def test_deeply_nested_condition_loads_or_is_a_problem(write_policy: WritePolicy,
                                                       run_cli: RunCli, depth: int) -> None:
    """However deep a condition nests, loading ends in a policy or in positioned problems,
    never in a crash of the loader."""
    path = write_policy(nested_not_policy(depth), "deep.yaml")
    outcome = load_outcome(path)
    if isinstance(outcome, PolicyError):
        assert outcome.problems
        assert all(p.pos.file == str(path) for p in outcome.problems)
        expected_code = 1
    else:
        (rule,) = outcome.policies[0].rules
        assert rule.facts == ("drift_score",)
        expected_code = 0
    proc = run_cli("validate", str(path))
    assert proc.returncode == expected_code, proc.stderr
    if expected_code == 1:
        assert proc.stderr.startswith(f"{path}:")


def test_nesting_bomb_is_refused(write_policy: WritePolicy, run_cli: RunCli) -> None:
    """Like the alias bomb, hundreds of nested brackets are refused as a problem."""
    text = policy_text("nest", "r").replace(
        "spec:\n", "spec:\n  bomb: " + "[" * 500 + "]" * 500 + "\n")
    path = write_policy(text, "nest.yaml")
    outcome = load_outcome(path)
    assert isinstance(outcome, PolicyError)
    assert all(p.pos.file == str(path) for p in outcome.problems)
    proc = run_cli("validate", str(path))
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"{path}:")


@pytest.mark.parametrize("fact", ["drift_score", "price"])
def test_integer_threshold_beyond_float_is_a_problem(write_policy: WritePolicy,
                                                     run_cli: RunCli, fact: str) -> None:
    text = policy_text("huge-threshold", "r").replace(
        "{fact: drift_score, op: \">=\", value: 0.8}",
        f"{{fact: {fact}, op: \">=\", value: 1{'0' * 400}}}")
    path = write_policy(text, "huge.yaml")
    outcome = load_outcome(path)
    assert isinstance(outcome, PolicyError)
    (problem,) = outcome.problems
    assert (problem.pos.file, problem.pos.line) == (str(path), 9)
    proc = run_cli("validate", str(path))
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"{path}:9:")


def test_a_policy_that_validates_also_compiles(write_policy: WritePolicy, tmp_path: Path,
                                               run_cli: RunCli) -> None:
    """`fugger validate` saying ok must mean `fugger eval` can use the policy: a threshold
    the rule engine cannot hold (2**53 + 1 for a fact with no maximum) is refused when the
    policy loads, or it compiles."""
    text = policy_text("big-price", "r").replace(
        "{fact: drift_score, op: \">=\", value: 0.8}",
        "{fact: price, op: \">=\", value: 9007199254740993}")
    path = write_policy(text, "price.yaml")
    outcome = load_outcome(path)
    if isinstance(outcome, PolicyError):
        (problem,) = outcome.problems
        assert (problem.pos.file, problem.pos.line) == (str(path), 9)
    else:
        SafetyEvaluator(outcome).close()
    facts = tmp_path / "facts.jsonl"
    facts.write_text('{"ts": "2025-03-04T15:30:00Z", "symbol": "SP500", "price": 10.5}\n')
    validated = run_cli("validate", str(path.parent))
    evaluated = run_cli("eval", "--policies", str(path.parent), "--facts", str(facts),
                        "--audit", str(tmp_path / "audit.db"), cwd=tmp_path)
    assert validated.returncode in (0, 1)
    assert evaluated.returncode == validated.returncode, evaluated.stderr


def test_a_rule_of_exactly_the_comparison_limit_loads_and_decides(
        write_policy: WritePolicy) -> None:
    """48 comparisons fit in one rule (49 are refused: see the corpus); the rule works."""
    first = ", ".join(str(i) for i in range(24))
    second = ", ".join(str(i) for i in range(100, 124))
    path = write_policy(f"""\
apiVersion: fuggerbot/v1
kind: SafetyPolicy
metadata: {{name: wide-rule, version: 1.0.0}}
spec:
  rules:
    - id: odd-days-block
      when:
        any:
          - {{fact: days_since_rebalance, op: in, value: [{first}]}}
          - {{fact: days_since_rebalance, op: in, value: [{second}]}}
      action: block_new
""")
    evaluator = SafetyEvaluator(load_policy_set([str(path)]))
    try:
        ts = "2025-03-04T15:30:00Z"
        actions = {days: evaluator.decide({"ts": ts, "symbol": "X",
                                           "days_since_rebalance": days}).action.value
                   for days in (0, 23, 24, 99, 100, 123, 124)}
        assert actions == {0: "block_new", 23: "block_new", 24: "allow", 99: "allow",
                           100: "block_new", 123: "block_new", 124: "allow"}
    finally:
        evaluator.close()


def with_alerts(name: str, rule_id: str, alerts: str) -> str:
    return policy_text(name, rule_id).replace("spec:\n", f"spec:\n  alerts: {alerts}\n")


def test_alert_settings_are_read_from_the_safety_policy(write_policy: WritePolicy,
                                                         safety_set: PolicySet) -> None:
    assert safety_set.alert_settings == AlertSettings(min_duration=3, clear_after=30)
    path = write_policy(with_alerts("alpha", "one", "{min_duration: 4}"))
    assert load_policy_set([str(path)]).alert_settings == AlertSettings(4, 2)
    plain = write_policy(policy_text("beta", "two"), directory="plain")
    assert load_policy_set([str(plain)]).alert_settings == AlertSettings(2, 2)


def test_bad_or_doubly_declared_alert_settings_are_refused(write_policy: WritePolicy) -> None:
    bad = write_policy(with_alerts("alpha", "one", "{min_duration: 0, clear_after: 1.5}"),
                       directory="bad")
    with pytest.raises(PolicyError) as info:
        load_policy_set([str(bad)])
    assert len(info.value.problems) == 2
    assert all(p.pos.line == 7 for p in info.value.problems), info.value.problems
    write_policy(with_alerts("alpha", "one", "{min_duration: 2}"), "a.yaml")
    second = write_policy(with_alerts("beta", "two", "{clear_after: 3}"), "b.yaml")
    with pytest.raises(PolicyError) as info:
        load_policy_set([str(second.parent)])
    (problem,) = info.value.problems
    assert problem.pos.file == str(second)
    assert "declare the alert settings in one safety policy" in problem.message
