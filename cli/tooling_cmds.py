"""test, lint and diff: tools for people who write policies."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from cli.common import EXIT_INVALID, EXIT_USAGE, Format, fail, load_policies
from cli.plain import write_lines
from cli.scale_cmds import ClusterOpt, WorkersOpt, client_for
from engine.audit.store import AuditError, AuditStore
from engine.backends.agreement import BackendDisagreement
from engine.factsource import FactsError, read_snapshots
from engine.policy.model import PolicySet
from engine.shadow import ShadowSummary
from engine.tooling.case_checks import case_problems
from engine.tooling.cases import Case, CaseError, load_cases
from engine.tooling.diff import PolicyChange, PolicyDiff, RuleChange, diff_sets, replay
from engine.tooling.lint import lint
from engine.tooling.runner import CaseRunner, Coverage, coverage

DEFAULT_TESTS = os.path.join("policies", "tests")

PoliciesOpt = Annotated[str, typer.Option("--policies", "-p", metavar="DIR",
                                          help="Directory (or file) of policy YAML files.")]
FormatOpt = Annotated[Format, typer.Option("--format", help="text for people, json for "
                                                            "programs.")]


def _say(line: str = "") -> None:
    # Plain writes: policy text is full of brackets a markup renderer would eat.
    write_lines(line)


def _cases(paths: list[str]) -> list[Case]:
    try:
        return load_cases(paths)
    except CaseError as e:
        for p in e.problems:
            write_lines(p, sys.stderr)
        n = len(e.problems)
        print(f"{n} problem{'s' if n != 1 else ''} in the test files; no case was run",
              file=sys.stderr)
        raise typer.Exit(EXIT_INVALID) from e


def _refuse_unknown_names(cases: list[Case], ps: PolicySet) -> None:
    problems = case_problems(cases, ps)
    if problems:
        for p in sorted(problems):
            write_lines(str(p), sys.stderr)
        print(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in the test "
              "files; no case was run", file=sys.stderr)
        raise typer.Exit(EXIT_INVALID)


# --- test ---------------------------------------------------------------------------------


def test_cmd(
    paths: Annotated[list[str] | None, typer.Argument(
        metavar="PATH...", help=f"Test case files or directories (default {DEFAULT_TESTS}).",
        show_default=False)] = None,
    policies: PoliciesOpt = "policies",
    show_coverage: Annotated[bool, typer.Option(
        "--coverage", help="List every rule with the number of cases that fired it.")] = False,
    min_coverage: Annotated[float | None, typer.Option(
        "--min-coverage", metavar="N", min=0, max=100,
        help="Exit 1 when fewer than N% of the rules are fired by some case.")] = None,
    fmt: FormatOpt = Format.text,
) -> None:
    """Run policy test cases: facts in, expected action and deciding rule out. Exit 1 when a
    case fails or coverage is below --min-coverage."""
    ps = load_policies([policies])
    cases = _cases(paths or [DEFAULT_TESTS])
    _refuse_unknown_names(cases, ps)
    runner = CaseRunner(ps)
    try:
        results = runner.run_all(cases)
    finally:
        runner.close()
    cov = coverage(ps, results)
    failed = [r for r in results if not r.passed]
    below = min_coverage is not None and cov.percent < min_coverage
    if fmt is Format.json:
        doc: dict[str, Any] = {"passed": len(results) - len(failed), "failed": len(failed),
                               "results": [r.to_json() for r in results],
                               "coverage": cov.to_json()}
        if min_coverage is not None:
            doc["min_coverage"] = min_coverage
            doc["coverage_ok"] = not below
        _say(json.dumps(doc))
    else:
        for r in failed:
            _say(r.message())
        if show_coverage:
            _coverage_text(cov)
        _say(f"{len(results) - len(failed)} passed, {len(failed)} failed")
        if min_coverage is not None:
            verdict = "below" if below else "meets"
            _say(f"rule coverage {cov.percent:.1f}% ({cov.exercised}/{cov.total}) {verdict} "
                 f"the minimum {min_coverage:g}%")
    if failed or below:
        raise typer.Exit(EXIT_INVALID)


def _coverage_text(cov: Coverage) -> None:
    _say(f"rule coverage: {cov.exercised}/{cov.total} rules fired by some case "
         f"({cov.percent:.1f}%)")
    width = max((len(r.rule.id) for r in cov.rules), default=0)
    for r in cov.rules:
        _say(f"  {r.rule.id:<{width}}  {r.cases:>4} case(s)  {r.rule.source}")
    if cov.untested:
        _say("not exercised by any case: " + ", ".join(r.id for r in cov.untested))


# --- lint ---------------------------------------------------------------------------------


def lint_cmd(
    paths: Annotated[list[str] | None, typer.Argument(
        metavar="PATH...", help="Policy files or directories (default policies).",
        show_default=False)] = None,
    tests: Annotated[str | None, typer.Option(
        "--tests", metavar="DIR", help="Test cases that every rule should be named in "
                                       "(default: PATH/tests when it exists).",
        show_default=False)] = None,
    fmt: FormatOpt = Format.text,
) -> None:
    """Find rules that can never fire or never decide, duplicate conditions, thresholds that
    contradict each other and untested rules. Exit 1 when any finding is an error."""
    paths = paths or ["policies"]
    ps = load_policies(paths)
    tests_dir = tests if tests is not None else _default_tests(paths[0])
    if tests is not None and not os.path.exists(tests):
        fail(f"--tests {tests}: no such file or directory", EXIT_USAGE)
    cases: list[Case] | None = None
    test_errors: list[str] = []
    if tests_dir is not None:
        try:
            cases = load_cases([tests_dir])
        except CaseError as e:
            test_errors = [f"{p.pos}: error: {p.message} [test-file]" for p in e.problems]
    findings = lint(ps, cases)
    errors = sum(1 for f in findings if f.severity == "error") + len(test_errors)
    warnings = sum(1 for f in findings if f.severity == "warning")
    if fmt is Format.json:
        _say(json.dumps({"findings": [f.to_json() for f in findings],
                         "test_file_errors": test_errors, "tests": tests_dir,
                         "errors": errors, "warnings": warnings}))
    else:
        for line in test_errors:
            _say(line)
        for f in findings:
            _say(str(f))
        checked = f"; rules checked against the cases in {tests_dir}" if cases is not None else \
            "; no test directory, rules not checked for cases"
        _say(f"{errors} error(s), {warnings} warning(s) in {len(ps.policies)} "
             f"policies{checked}")
    if errors:
        raise typer.Exit(EXIT_INVALID)


def _default_tests(first: str) -> str | None:
    base = first if os.path.isdir(first) else os.path.dirname(first)
    candidate = os.path.join(base, "tests")
    return candidate if os.path.isdir(candidate) else None


# --- diff ---------------------------------------------------------------------------------


def diff_cmd(
    old: Annotated[str, typer.Argument(metavar="OLD", help="The policies in force "
                                                           "(directory or file).")],
    new: Annotated[str, typer.Argument(metavar="NEW", help="The proposed policies.")],
    facts: Annotated[str | None, typer.Option(
        "--facts", "-f", metavar="FILE", help="Replay these snapshots (JSON, JSONL or CSV).",
        show_default=False)] = None,
    audit: Annotated[str | None, typer.Option(
        "--audit", metavar="DB", help="Replay the facts of every decision in this audit "
                                      "store.", show_default=False)] = None,
    examples: Annotated[int, typer.Option("--examples", metavar="N", min=0,
                                          help="How many changed decisions to show.")] = 5,
    fmt: FormatOpt = Format.text,
    workers: WorkersOpt = None,
    cluster: ClusterOpt = None,
) -> None:
    """The semantic difference between two policy sets; with --facts or --audit, how many
    decisions would change (decided in the vectorised backend, checked against durable-rules
    on every snapshot; with --workers or --cluster, partitioned by symbol). Exit 1 when a
    policy changed without a new metadata.version."""
    if facts is not None and audit is not None:
        fail("give --facts or --audit, not both", EXIT_USAGE)
    old_set = load_policies([old])
    new_set = load_policies([new])
    result = diff_sets(old_set, new_set)
    summary: ShadowSummary | None = None
    source = facts or audit
    if source is not None:
        with _replay_input(facts, audit) as snapshots, client_for(workers, cluster) as client:
            try:
                if client is None:
                    summary = replay(old_set, new_set, snapshots, examples=examples)
                else:
                    from engine.scale.work import diff_spread
                    summary = diff_spread(client, old_set, new_set, snapshots,
                                          examples=examples)
            except (ValueError, BackendDisagreement) as e:
                fail(f"{e}; no count is reported" if isinstance(e, BackendDisagreement)
                     else str(e))
    if fmt is Format.json:
        doc: dict[str, Any] = result.to_json()
        doc["old"], doc["new"] = old, new
        doc["replay"] = None if summary is None else {"source": source, **summary.to_json()}
        _say(json.dumps(doc, default=str))
    else:
        _diff_text(result, old_set, new_set)
        if summary is not None and source is not None:
            _replay_text(summary, source)
        for problem in result.errors:
            write_lines(f"error: {problem}", sys.stderr)
    if result.errors:
        raise typer.Exit(EXIT_INVALID)


@contextmanager
def _replay_input(facts: str | None,
                  audit: str | None) -> Iterator[Iterable[tuple[str, object]]]:
    if facts is not None:
        try:
            yield [(s.where, s.data) for s in read_snapshots(facts)]
            return
        except FactsError as e:
            for m in e.messages:
                write_lines(m, sys.stderr)
            raise typer.Exit(EXIT_INVALID) from e
    assert audit is not None
    try:
        store = AuditStore(audit, create=False)
    except AuditError as e:
        fail(str(e))
    with store:
        # The decisions are replayed as they are read: memory stays flat in the store's size.
        yield ((f"{audit}#{r.seq}", r.body["facts"]) for r in store.iter_records("decision")
               if isinstance(r.body, dict) and "facts" in r.body)


def _diff_text(result: PolicyDiff, old: PolicySet, new: PolicySet) -> None:
    changed = result.changed
    if not changed:
        _say(f"no semantic difference ({len(old.policies)} policies)")
    for p in changed:
        _policy_text(p)
    if changed:
        same = len(result.policies) - len(changed)
        _say(f"{len(changed)} policy(ies) differ, {same} unchanged")


def _policy_text(p: PolicyChange) -> None:
    if p.old is None and p.new is not None:
        _say(f"+ policy {p.name} ({p.kind}) {p.new.version}: added in {p.new.path}, "
             f"{len(p.new.rules)} rule(s)")
        for r in p.new.rules:
            _say(f"    + rule {r.id}: when {r.when.text()} -> {r.action}  ({r.source})")
        return
    if p.new is None and p.old is not None:
        _say(f"- policy {p.name} ({p.kind}) {p.old.version}: removed (was {p.old.path})")
        return
    assert p.old is not None and p.new is not None
    version = (f"version {p.old.version} -> {p.new.version}" if p.old.version != p.new.version
               else f"version {p.new.version} (NOT BUMPED)")
    _say(f"~ policy {p.name} ({p.kind}): {version}  ({p.new.path})")
    for rc in p.rules:
        _rule_text(rc)
    for s in p.settings:
        _say(f"    ~ {s.path}: {_show(s.old)} -> {_show(s.new)}")


def _rule_text(rc: RuleChange) -> None:
    o, n = rc.old, rc.new
    if o is None and n is not None:
        _say(f"    + rule {rc.rule_id}: when {n.when.text()} -> {n.action}  ({n.source})")
    elif n is None and o is not None:
        _say(f"    - rule {rc.rule_id}: when {o.when.text()} -> {o.action}  (was {o.source})")
    elif o is not None and n is not None and rc.fields:
        _say(f"    ~ rule {rc.rule_id}  ({n.source})")
        if "condition" in rc.fields:
            _say(f"        when   {o.when.text()}")
            _say(f"            -> {n.when.text()}")
        else:
            _say(f"        when   {n.when.text()} (unchanged)")
        if "action" in rc.fields:
            _say(f"        action {o.action} -> {n.action}")
        else:
            _say(f"        action {n.action} (unchanged)")
        if "description" in rc.fields:
            _say(f"        description {o.description!r} -> {n.description!r}")


def _replay_text(summary: ShadowSummary, source: str) -> None:
    _say(f"replayed {summary.compared} snapshot(s) from {source}: {summary.changed} "
         "decision(s) would change")
    for transition, n in sorted(summary.transitions.items(), key=lambda kv: (-kv[1], kv[0])):
        _say(f"  {transition}: {n}")
    if summary.examples:
        _say("examples:")
        for d in summary.examples:
            where = f"  [{d.where}]" if d.where else ""
            _say(f"  {d.text()}{where}")


def _show(v: object) -> str:
    return "(none)" if v is None else json.dumps(v, default=str)
