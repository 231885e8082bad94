"""validate, eval and explain."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from cli.common import (
    EXIT_INVALID,
    ClockName,
    ClockOpt,
    Format,
    clock_of,
    err,
    fail,
    load_policies,
    out,
    print_problems,
    read_sourced,
)
from cli.plain import styled
from engine.audit.store import DEFAULT_PATH, AuditError, AuditStore
from engine.decision import Decision
from engine.evaluator import SafetyEvaluator
from engine.ids import new_id
from engine.policy.loader import discover, load_policy_set
from engine.policy.model import PolicySet
from engine.policy.problems import PolicyError
from engine.rules.reference import comparisons, holds

BATCH = 500

PoliciesOpt = Annotated[str, typer.Option("--policies", "-p", metavar="DIR",
                                          help="Directory (or file) of policy YAML files.")]
FactsOpt = Annotated[str, typer.Option("--facts", "-f", metavar="FILE",
                                       help="Snapshots as JSON, JSONL or CSV; '-' reads stdin.")]
FormatOpt = Annotated[Format, typer.Option("--format", help="text for people, json for "
                                                            "programs (one object per line).")]
InputFormatOpt = Annotated[str, typer.Option("--input-format", help="auto, json, jsonl or csv.")]


def validate(
    paths: Annotated[list[str], typer.Argument(metavar="PATH...",
                                               help="Policy files or directories.")],
) -> None:
    """Check policies: every problem at once, as FILE:LINE:COL: message. Exit 1 if any."""
    files = discover(paths)
    try:
        ps = load_policy_set(paths)
    except PolicyError as e:
        print_problems(e)
        n = len(e.problems)
        print(f"{n} problem{'s' if n != 1 else ''} in {len(files)} file(s)", file=sys.stderr)
        raise typer.Exit(EXIT_INVALID) from e
    for p in ps.policies:
        out.print(f"ok  {p.path}  {p.kind} {p.name} {p.version}  ({len(p.rules)} rules)")
    out.print(f"policy set {ps.hash[:12]}: {len(ps.policies)} policies valid")


def eval_cmd(
    policies: PoliciesOpt = "policies",
    facts: FactsOpt = "-",
    audit: Annotated[str, typer.Option("--audit", metavar="DB",
                                       help="Audit store (SQLite) that records every "
                                            "decision.")] = DEFAULT_PATH,
    fmt: FormatOpt = Format.text,
    input_format: InputFormatOpt = "auto",
    clock: ClockOpt = ClockName.wall,
) -> None:
    """Decide every snapshot under the safety policies and record each decision.

    A fact a rule needs that is missing, invalid or stale decides the policy's fail-closed
    action (halt by default) and is named as fact-missing:NAME, fact-invalid:NAME or
    fact-stale:NAME. On the wall clock (the default) a snapshot older than max_fact_age
    against now is fact-stale:ts, one dated ahead of now by more than max_clock_skew is
    fact-invalid:ts.
    """
    ps = load_policies([policies])
    snaps = read_sourced(facts, input_format)
    evaluator = _evaluator(ps)
    try:
        store = AuditStore(audit)
        store.record_activation(ps)
    except AuditError as e:
        fail(str(e))
    decisions: list[Decision] = []
    pending: list[tuple[str, str, dict[str, object]]] = []
    # One eval is one cycle of the live system: a resume reads each symbol's verdict in the
    # latest cycle it appeared in, the most restrictive of its snapshots there.
    cycle_id = new_id()
    on = clock_of(clock)
    try:
        for s in snaps:
            d = evaluator.decide(s.data, clock=on)
            decisions.append(d)
            pending.append(("decision", d.decision_id,
                            {"decision": d.to_json(), "facts": s.data, "source": s.where,
                             "cycle": cycle_id}))
            if len(pending) >= BATCH:
                store.append_many(pending)
                pending = []
        store.append_many(pending)
    except AuditError as e:
        fail(f"{e}; decisions after the last committed batch were not recorded")
    finally:
        store.close()
    if fmt is Format.json:
        for d in decisions:
            sys.stdout.write(json.dumps(d.to_json()) + "\n")
        return
    _decision_table(decisions, audit)


def _evaluator(ps: PolicySet) -> SafetyEvaluator:
    try:
        return SafetyEvaluator(ps)
    except ValueError as e:
        fail(str(e))


def _decision_table(decisions: list[Decision], audit: str) -> None:
    table = Table(title=f"{len(decisions)} decision(s), recorded in {audit}", title_justify="left")
    for col in ("decision", "ts", "symbol", "action", "deciding rule", "also fired"):
        table.add_column(col, overflow="fold")
    colours = {"halt": "bold red", "flatten": "red", "block_new": "yellow",
               "wait_confirmation": "cyan", "allow": "green"}
    for d in decisions:
        rule = d.deciding_rule
        others = [f.rule for f in d.fired if rule is None or f.rule != rule.rule]
        table.add_row(d.decision_id, d.ts or "?", d.symbol or "?",
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
) -> None:
    """Show, rule by rule, what matched and why not: every comparison with its observed value
    and threshold, on the clock eval would use. Nothing is recorded."""
    ps = load_policies([policies])
    snaps = read_sourced(facts, input_format)
    evaluator = _evaluator(ps)
    reports = []
    on = clock_of(clock)
    for s in snaps:
        d = evaluator.decide(s.data, clock=on)
        values = evaluator.checked_values(s.data, clock=on)
        rules = []
        for policy in ps.of_kind("SafetyPolicy"):
            fired_ids = {f.rule for f in d.fired}
            vals = values.get(policy.name, {})
            for r in policy.rules:
                matched = r.id in fired_ids
                if holds(r.when, vals) != matched:
                    err.print(f"warning: {r.id}: the rule engine and the reference evaluation "
                              "disagree; the decision follows the rule engine")
                rules.append({
                    "rule": r.id, "policy": policy.name, "action": r.action,
                    "source": r.source, "matched": matched,
                    "comparisons": [
                        {"fact": c.leaf.fact, "op": c.leaf.op, "threshold": _jsonable(c.leaf.value),
                         "observed": c.observed, "result": c.result}
                        for c in comparisons(r.when, vals)],
                })
        reports.append({"where": s.where, "decision": d.to_json(), "rules": rules})
    if fmt is Format.json:
        for rep in reports:
            sys.stdout.write(json.dumps(rep) + "\n")
        return
    for rep in reports:
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


def _jsonable(v: object) -> object:
    return list(v) if isinstance(v, tuple) else v
