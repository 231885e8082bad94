"""fugger alerts, fugger report: what a run raised and what it did, from the audit store."""

from __future__ import annotations

import enum
import json
import sys
from collections import deque
from collections.abc import Iterable
from typing import Annotated

import typer

from cli.common import Format, FormatOpt, fail, out, resolve_ref
from cli.plain import write_lines
from engine.audit.store import DEFAULT_PATH, AuditError, AuditStore, Record
from engine.ids import short
from engine.monitoring.alert import Severity
from engine.monitoring.summary.build import summarize
from engine.monitoring.summary.records import LAST_ALERTS, SummaryError, alert_line

AuditOpt = Annotated[str, typer.Option("--audit", metavar="DB", help="The audit store.")]


class SeverityName(enum.StrEnum):
    info = "info"
    warning = "warning"
    critical = "critical"


def _open(path: str) -> AuditStore:
    try:
        return AuditStore(path, create=False)
    except AuditError as e:
        fail(str(e))


def alerts(
    audit: AuditOpt = DEFAULT_PATH,
    all_: Annotated[bool, typer.Option("--all", help="Every alert kept, not only the last "
                                                     f"{LAST_ALERTS}.")] = False,
    severity: Annotated[SeverityName | None, typer.Option(
        "--severity", metavar="S", help="Only alerts of this severity or above: info, warning, "
                                        "critical.")] = None,
    run: Annotated[str | None, typer.Option("--run", metavar="RUN_ID",
                                            help="Only alerts of this run.")] = None,
    fmt: FormatOpt = Format.text,
) -> None:
    """The alerts recorded in the audit store, oldest first (the last 20 unless --all)."""
    floor = Severity.parse(severity.value) if severity is not None else Severity.INFO
    with _open(audit) as store:
        if run is not None:
            run = resolve_ref(store, run, kind="run_started", what="run")
        chosen: Iterable[Record] = (
            r for r in store.iter_records("alert") if _wanted(r, floor, run)
        )
        rows = list(chosen) if all_ else list(deque(chosen, maxlen=LAST_ALERTS))
    if fmt is Format.json:
        for r in rows:
            sys.stdout.write(json.dumps(r.body, sort_keys=True) + "\n")
        return
    if not rows:
        out.print(f"{audit}: no alerts" + (f" of run {run}" if run else "")
                  + (f" at {floor.value} or above" if severity is not None else ""))
        return
    for r in rows:
        a = alert_line(r)
        run_id = r.body.get("run_id", "-") if isinstance(r.body, dict) else "-"
        write_lines(f"{a.ts}  {a.severity.upper():8}  {a.key}  {a.title}: {a.message}"
                    f"  [run {short(str(run_id))}, alert {short(a.alert_id)}]")


def _wanted(r: Record, floor: Severity, run: str | None) -> bool:
    body = r.body if isinstance(r.body, dict) else {}
    if run is not None and body.get("run_id") != run:
        return False
    try:
        return Severity.parse(body.get("severity")).rank >= floor.rank
    except ValueError:
        # An alert whose severity cannot be read is shown rather than hidden.
        return True


def report(
    audit: AuditOpt = DEFAULT_PATH,
    run: Annotated[str | None, typer.Option("--run", metavar="RUN_ID",
                                            help="The run to report (default: the latest).")]
    = None,
    out_dir: Annotated[str | None, typer.Option("--out", metavar="DIR",
                                                help="Also write DIR/report.html.")] = None,
    fmt: FormatOpt = Format.text,
) -> None:
    """Summarise a run from the audit store alone; with --out, also write the HTML report."""
    with _open(audit) as store:
        try:
            summary = summarize(store, run)
            path = None
            if out_dir is not None:
                from engine.monitoring.report import write_report  # plotly is slow to load

                path = write_report(store, out_dir, summary.run_id, summary=summary)
        except SummaryError as e:
            fail(str(e))
    if fmt is Format.json:
        sys.stdout.write(json.dumps(summary.to_json(), sort_keys=True) + "\n")
    else:
        write_lines(summary.render_text())
    if path is not None:
        print(f"report written to {path}", file=sys.stderr)
