"""validate, eval and explain."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from cli.common import (
    EXIT_INVALID,
    ClockName,
    ClockOpt,
    Format,
    MaxSnapshotOpt,
    clock_of,
    err,
    fail,
    load_policies,
    open_facts,
    out,
    print_problems,
)
from cli.plain import styled, write_lines
from cli.scale_cmds import ClusterOpt, WorkersOpt, client_for
from engine.actions import Action
from engine.audit.store import DEFAULT_PATH, AuditError, AuditStore
from engine.clock import Clock
from engine.decision import Decision
from engine.evaluator import SafetyEvaluator
from engine.explain import explain as explain_rules
from engine.factsource import DEFAULT_MAX_SNAPSHOT_BYTES, SourcedSnapshot
from engine.ids import new_id, short
from engine.policy.loader import discover, load_policy_set
from engine.policy.model import PolicySet
from engine.policy.problems import PolicyError

BATCH = 500
#: A batch is also recorded once it holds this much input, so memory stays flat whatever
#: the size of each snapshot.
BATCH_BYTES = 1024 * 1024

PoliciesOpt = Annotated[str, typer.Option("--policies", "-p", metavar="DIR",
                                          help="Directory (or file) of policy YAML files.")]
FactsOpt = Annotated[str, typer.Option("--facts", "-f", metavar="FILE",
                                       help="Snapshots as JSON, JSONL or CSV; '-' reads stdin.")]
FormatOpt = Annotated[Format, typer.Option("--format", help="text for people, json for "
                                                            "programs (one object per line).")]
InputFormatOpt = Annotated[str, typer.Option(
    "--input-format", metavar="FORMAT", help="auto, json, jsonl, csv or parquet.")]


def validate(
    paths: Annotated[list[str] | None, typer.Argument(
        metavar="PATH...", help="Policy files or directories (default policies).",
        show_default=False)] = None,
    fmt: FormatOpt = Format.text,
) -> None:
    """Check policies: every problem at once, as FILE:LINE:COL: message. Exit 1 if any."""
    paths = paths or ["policies"]
    files = discover(paths)
    try:
        ps = load_policy_set(paths)
    except PolicyError as e:
        n = len(e.problems)
        if fmt is Format.json:
            sys.stdout.write(json.dumps({
                "valid": False, "files": len(files),
                "problems": [{"file": p.pos.file, "line": p.pos.line, "column": p.pos.col,
                              "message": p.message} for p in e.problems]}) + "\n")
        else:
            print_problems(e)
            print(f"{n} problem{'s' if n != 1 else ''} in {len(files)} file(s)",
                  file=sys.stderr)
        raise typer.Exit(EXIT_INVALID) from e
    if fmt is Format.json:
        sys.stdout.write(json.dumps({
            "valid": True, "files": len(files), "policy_set": ps.hash,
            "policies": [{"path": p.path, "kind": p.kind, "name": p.name,
                          "version": p.version, "rules": len(p.rules)}
                         for p in ps.policies], "problems": []}) + "\n")
        return
    for p in ps.policies:
        write_lines(f"ok  {p.path}  {p.kind} {p.name} {p.version}  ({len(p.rules)} rules)")
    out.print(f"policy set {short(ps.hash)}: {len(ps.policies)} policies valid")


def eval_cmd(
    policies: PoliciesOpt = "policies",
    facts: FactsOpt = "-",
    audit: Annotated[str, typer.Option("--audit", metavar="DB",
                                       help="Audit store (SQLite) that records every "
                                            "decision.")] = DEFAULT_PATH,
    fmt: FormatOpt = Format.text,
    input_format: InputFormatOpt = "auto",
    clock: ClockOpt = ClockName.wall,
    max_snapshot_bytes: MaxSnapshotOpt = DEFAULT_MAX_SNAPSHOT_BYTES,
    workers: WorkersOpt = None,
    cluster: ClusterOpt = None,
    fail_on_deny: Annotated[bool, typer.Option(
        "--fail", help="Exit 1 when any decision is not allow (for scripts and CI), after "
                       "every decision is recorded and shown.")] = False,
) -> None:
    """Decide every snapshot under the safety policies and record each decision.

    A fact a rule needs that is missing, invalid or stale decides the policy's fail-closed
    action (halt by default) and is named as fact-missing:NAME, fact-invalid:NAME or
    fact-stale:NAME. On the wall clock (the default) a snapshot older than max_fact_age
    against now is fact-stale:ts, one dated ahead of now by more than max_clock_skew is
    fact-invalid:ts.
    """
    ps = load_policies([policies])
    evaluator = _evaluator(ps)
    snaps = open_facts(facts, input_format, max_snapshot_bytes=max_snapshot_bytes)
    try:
        store = AuditStore(audit)
        store.record_activation(ps)
    except AuditError as e:
        fail(str(e))
    title: str | None = f"{snaps.count} decision(s), recorded in {audit}"
    batch: list[tuple[Decision, SourcedSnapshot]] = []
    size = 0
    # One eval is one cycle of the live system: a resume reads each symbol's verdict in the
    # latest cycle it appeared in, the most restrictive of its snapshots there.
    cycle_id = new_id()
    on = clock_of(clock)
    not_allowed = 0
    try:
        with client_for(workers, cluster) as client:
            # With a cluster, snapshots are decided there, partitioned by symbol, and come back
            # in input order: what is recorded and shown is the same.
            if client is None:
                decided: Iterator[tuple[Decision, SourcedSnapshot]] = (
                    (evaluator.decide(s.data, clock=on), s) for s in snaps)
            else:
                from engine.scale.work import decide_spread
                decided = decide_spread(client, ps, snaps, lambda s: s.data, on)
            for d, s in decided:
                not_allowed += d.action is not Action.ALLOW
                batch.append((d, s))
                size += s.size
                if len(batch) >= BATCH or size >= BATCH_BYTES:
                    _record_and_show(store, batch, fmt, title, cycle_id)
                    title, batch, size = None, [], 0
            if batch or title is not None:
                _record_and_show(store, batch, fmt, title, cycle_id)
    except AuditError as e:
        fail(f"{e}; decisions after the last committed batch were not recorded")
    finally:
        store.close()
    if fail_on_deny and not_allowed:
        write_lines(f"{not_allowed} of {snaps.count} decision(s) not allow", sys.stderr)
        raise typer.Exit(EXIT_INVALID)


def _record_and_show(store: AuditStore, batch: list[tuple[Decision, SourcedSnapshot]],
                     fmt: Format, title: str | None, cycle_id: str) -> None:
    """Record a batch of decisions in one transaction, then show them: what is shown is
    recorded. Text output is a table per batch, the title over the first."""
    store.append_many([("decision", d.decision_id,
                        {"decision": d.to_json(), "facts": d.record_facts(), "source": s.where,
                         "cycle": cycle_id})
                       for d, s in batch])
    if fmt is Format.json:
        for d, _ in batch:
            sys.stdout.write(json.dumps(d.to_json()) + "\n")
        return
    _decision_table([d for d, _ in batch], title)


def _evaluator(ps: PolicySet) -> SafetyEvaluator:
    try:
        return SafetyEvaluator(ps)
    except ValueError as e:
        fail(str(e))


def _decision_table(decisions: list[Decision], title: str | None) -> None:
    table = Table(title=title, title_justify="left")
    for col in ("decision", "ts", "symbol", "action", "deciding rule", "also fired"):
        table.add_column(col, overflow="fold")
    colours = {"halt": "bold red", "flatten": "red", "block_new": "yellow",
               "wait_confirmation": "cyan", "allow": "green"}
    for d in decisions:
        rule = d.deciding_rule
        others = [f.rule for f in d.fired if rule is None or f.rule != rule.rule]
        table.add_row(short(d.decision_id), d.ts or "?", d.symbol or "?",
                      styled((d.action.value, colours[d.action.value])),
                      styled(rule.rule, Text("\n"), rule.source) if rule else "-",
                      ", ".join(others) or "-")
    out.print(table)


def explain(
    policies: PoliciesOpt = "policies",
    facts: FactsOpt = "-",
    fmt: FormatOpt = Format.text,
    input_format: InputFormatOpt = "auto",
    clock: ClockOpt = ClockName.wall,
    max_snapshot_bytes: MaxSnapshotOpt = DEFAULT_MAX_SNAPSHOT_BYTES,
) -> None:
    """Show, rule by rule, what matched and why not: every comparison with its observed value
    and threshold, on the clock eval would use. Nothing is recorded."""
    ps = load_policies([policies])
    evaluator = _evaluator(ps)
    on = clock_of(clock)
    for s in open_facts(facts, input_format, max_snapshot_bytes=max_snapshot_bytes):
        report = _explanation(ps, evaluator, s, on)
        if fmt is Format.json:
            sys.stdout.write(json.dumps(report) + "\n")
        else:
            _explanation_text(report)


def _explanation(ps: PolicySet, evaluator: SafetyEvaluator, s: SourcedSnapshot,
                 on: Clock) -> dict[str, Any]:
    d, checks = explain_rules(evaluator, ps, s.data, on)
    for c in checks:
        if not c.agrees:
            err.print(f"warning: {c.rule}: the rule engine and the reference evaluation "
                      "disagree; the decision follows the rule engine")
    return {"where": s.where, "decision": d.to_json(), "rules": [c.to_json() for c in checks]}


def _explanation_text(rep: dict[str, Any]) -> None:
    dj = rep["decision"]
    assert isinstance(dj, dict)
    rule = dj["deciding_rule"]
    out.print(styled(f"{dj['symbol']} {dj['ts']}: ", (dj["action"], "bold"),
                     f" by {rule['rule']} ({rule['source']})" if rule else " (all clear)"))
    for f in dj["findings"]:
        out.print(styled("  ", (f["rule"], "red"), f": {f['detail']} -> {f['action']}"))
    for rr in rep["rules"]:
        assert isinstance(rr, dict)
        mark = ("MATCH", "red") if rr["matched"] else ("no match", "green")
        out.print(styled("  ", mark, f"  {rr['rule']} -> {rr['action']}  ({rr['source']})"))
        for c in rr["comparisons"]:
            seen = "unknown" if c["observed"] is None else c["observed"]
            verdict = {True: "true", False: "false", None: "unknown"}[c["result"]]
            out.print(f"      {c['fact']} {c['op']} {c['threshold']}: observed {seen} "
                      f"-> {verdict}")
    out.print("")
