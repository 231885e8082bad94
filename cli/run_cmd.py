"""fugger run: the main job, a replay of history through the whole engine."""

from __future__ import annotations

import enum
import functools
import json
import sys
import time
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from cli.common import (
    Format,
    MaxSnapshotOpt,
    check_day_range,
    day_option,
    err,
    fail,
    load_book_file,
    load_policies,
    open_facts,
    out,
    refuse_unknown,
)
from cli.identity import DEFAULT_ACCESS, AccessOpt, authorised
from cli.plain import write_lines
from engine.audit import activation
from engine.audit.store import DEFAULT_PATH, AuditError, AuditStore
from engine.backends.agreement import BackendDisagreement
from engine.factsource import DEFAULT_MAX_SNAPSHOT_BYTES
from engine.ids import short
from engine.policy.model import PolicySet

if TYPE_CHECKING:
    from engine.audit.witness import Witness
    from engine.cycle import CompiledSet
    from engine.replay import ReplayProgress

DEFAULT_APPROVED = "new-symbol-approval,large-order-approval"


class Engine(enum.StrEnum):
    durable = "durable"
    vector = "vector"


def run(
    policies: Annotated[str, typer.Option("--policies", "-p", metavar="DIR",
                                          help="The policy set; checked every 20 days and "
                                               "reloaded between two days when a file "
                                               "changed.")] = "policies",
    facts: Annotated[str, typer.Option("--facts", "-f", metavar="FILE",
                                       help="Snapshots of every day (JSONL, JSON or CSV).")] =
    "examples/history.jsonl",
    portfolio: Annotated[str, typer.Option(metavar="FILE", help="The starting book (YAML or "
                                                                "JSON).")] =
    "examples/portfolio.yaml",
    audit: Annotated[str, typer.Option("--audit", metavar="DB", help="Audit store.")] =
    DEFAULT_PATH,
    report: Annotated[str | None, typer.Option(metavar="DIR", help="Write report.html "
                                                                   "here.")] = None,
    approve_rules: Annotated[str | None, typer.Option(
        metavar="RULES",
        help="The declared approver: orders held by these approval rules (comma-separated "
             "rule ids of the approval policy) are approved in the cycle that queued them; "
             f"others expire. '' approves nothing. [default: {DEFAULT_APPROVED}]",
        show_default=False)] = None,
    resume_after: Annotated[int, typer.Option(
        metavar="DAYS", min=-1, help="The declared operator: days without a halting rule "
                                     "before a latched halt is resumed; -1 never resumes.")] = 5,
    start: Annotated[str | None, day_option(
        "--from", "First day replayed, by the snapshots' ts (UTC).")] = None,
    end: Annotated[str | None, day_option("--to", "Last day replayed.")] = None,
    sinks: Annotated[str | None, typer.Option(metavar="FILE", help="Alert sinks config "
                                                                   "(YAML).")] = None,
    shadow: Annotated[str | None, typer.Option(metavar="DIR", help="A candidate policy set "
                                                                   "decided beside the active "
                                                                   "one; differences are "
                                                                   "recorded, never acted "
                                                                   "on.")] = None,
    slippage_bps: Annotated[float, typer.Option(
        min=0, metavar="BPS", help="Price slippage of every paper fill, in basis points.")] = 5.0,
    metrics_points: Annotated[int, typer.Option(
        metavar="N", min=1, help="Points of history kept per metric; older ones drop.")] =
    10_000,
    commission: Annotated[float, typer.Option(metavar="USD", min=0, help="Per share.")] = 0.0,
    fmt: Annotated[Format, typer.Option("--format", help="Summary as text or JSON.")] =
    Format.text,
    access: AccessOpt = DEFAULT_ACCESS,
    witness: Annotated[str | None, typer.Option(
        metavar="DIR", help="Take signed audit checkpoints into DIR (and to the sinks) every "
                            "--checkpoint-every records or --checkpoint-seconds.")] = None,
    checkpoint_every: Annotated[int, typer.Option(
        min=1, metavar="N", help="With --witness: a checkpoint every N records.")] = 1000,
    checkpoint_seconds: Annotated[int, typer.Option(
        min=1, metavar="S", help="With --witness: a checkpoint at least every S seconds.")] =
    3600,
    key: Annotated[str, typer.Option("--key", envvar="FUGGER_AUDIT_KEY", metavar="FILE",
                                     help="The checkpoint signing key.")] =
    "~/.config/fugger/audit.key",
    max_snapshot_bytes: MaxSnapshotOpt = DEFAULT_MAX_SNAPSHOT_BYTES,
    engine: Annotated[Engine, typer.Option(
        "--engine", help="durable: decide in durable-rules; vector: decide each day in the "
                         "vectorised backend, checked against durable-rules on every "
                         "snapshot; the run stops with no result at a disagreement.")] =
    Engine.durable,
) -> None:
    """Replay every day of FACTS: decide, rotate, gate, queue, send to a paper broker,
    monitor and record; then print the summary (and write the report). FACTS is read as a
    stream, one day at a time, so it must be in time order. Starting a run activates its
    policy set: the admin role."""
    # Imported here: the replay needs pandas and the sinks, which other commands should not
    # pay for at start-up.
    from engine.cycle import CompiledSet
    from engine.history import History
    from engine.monitoring.sink_config import SinkConfigError, load_sinks
    from engine.monitoring.summary.build import summarize
    from engine.policy.watch import PolicyWatcher, WatchEvent
    from engine.replay import ApprovalRule, Replay, ReplayConfig, ResumeRule

    check_day_range(start, end)
    ps = load_policies([policies])
    approved = approved_rules(approve_rules, [ps])
    candidate = None
    if shadow:
        from engine.shadow_run import ShadowRun
        try:
            candidate = ShadowRun(load_policies([shadow]))
        except ValueError as e:
            fail(f"{shadow}: {e}")
    book = load_book_file(portfolio)
    history = History(start, end)
    snaps = open_facts(facts, max_snapshot_bytes=max_snapshot_bytes, visit=history.check)
    if not history.days_in_range:
        fail(f"{facts}: no snapshot in the chosen days")
    sink_list = []
    if sinks:
        try:
            sink_list = load_sinks(sinks)
        except SinkConfigError as e:
            fail(str(e))
    try:
        store = AuditStore(audit)
    except AuditError as e:
        fail(str(e))
    actor = authorised(store, access, "activate", target=ps.hash)
    signer = None
    if witness:
        from engine.audit.checkpoint import CheckpointError, load_private
        try:
            signer = load_private(Path(key).expanduser())
        except CheckpointError as e:
            fail(str(e))
    config = ReplayConfig(
        facts_file=facts, portfolio_file=portfolio, started_by=actor.name,
        approval=ApprovalRule(approved),
        resume=ResumeRule(None if resume_after < 0 else resume_after),
        slippage_bps=slippage_bps, commission_per_share=commission)
    events: list[WatchEvent] = []
    # A reload that would remove a policy waits for an explicit `fugger activate` of that
    # very set, recorded in this store.
    watcher = PolicyWatcher([policies], events.append,
                            compile=functools.partial(CompiledSet, engine=engine.value),
                            may_remove=lambda s: activation.explicitly_active(store, s))
    compiled = watcher.poll()
    if compiled is None:
        for event in events:
            for line in event.lines():
                write_lines(line, sys.stderr)
        fail(f"{policies}: the policy set was not applied")
    events.clear()  # the first activation is the set loaded above, not a reload
    if compiled.policy_set.hash != ps.hash:
        fail(f"{policies}: the policy files changed while loading; run again")

    def poll() -> tuple[CompiledSet | None, list[str]]:
        fresh = watcher.poll()
        problems = [str(p) for e in events if e.kind == "rejected" for p in e.problems]
        for e in events:
            if e.kind == "rejected":
                err.print(f"warning: {e.message}", markup=False)
                for p in e.problems:
                    err.print(f"  {p}", markup=False)
            elif e.kind == "activated":
                err.print(f"policies reloaded: {e.message}", markup=False)
        events.clear()
        return fresh, problems

    try:
        replay = Replay(store, compiled, book, config, run_dir=Path(audit).parent / "runs",
                        sinks=sink_list, poll_policies=poll, shadow=candidate,
                        metrics_points=metrics_points,
                        witness=_witness(store, signer, witness, checkpoint_every,
                                         checkpoint_seconds))
    except ValueError as e:
        fail(str(e))
    t0 = time.monotonic()
    try:
        with _progress() as tick:
            run_id = replay.run(history.days(s.data for s in snaps),
                                n_days=history.days_in_range, symbols=sorted(history.symbols),
                                progress=tick)
    except BackendDisagreement as e:
        store.close()
        fail(f"{e}; the run stopped there and no result is reported")
    elapsed = time.monotonic() - t0
    summary = summarize(store, run_id)
    if fmt is Format.json:
        sys.stdout.write(json.dumps(summary.to_json()) + "\n")
    else:
        write_lines(summary.render_text())
        out.print(f"replayed in {elapsed:.1f} s; audit store {audit}; run {short(run_id)}",
                  markup=False)
    if candidate is not None:
        s = candidate.summary
        lines = [f"shadow {shadow}: {s.changed} of {s.compared} decisions would differ"]
        lines += [f"  {t}: {n}" for t, n in sorted(s.transitions.items())]
        lines += [f"  e.g. {d.text()}" for d in s.examples]
        for line in lines:
            (out if fmt is Format.text else err).print(line)
        candidate.close()
    if report:
        from engine.monitoring.report import write_report
        path = write_report(store, report, run_id, summary=summary)
        (out if fmt is Format.text else err).print(f"report: {path}", markup=False)
    store.close()


def approved_rules(given: str | None, sets: Iterable[PolicySet]) -> frozenset[str]:
    """The approval rules the declared approver approves; a rule id no policy set has is a
    usage error naming the nearest ones (it would approve nothing, unseen)."""
    names = frozenset(r.strip() for r in (DEFAULT_APPROVED if given is None else given)
                      .split(",") if r.strip())
    if given is not None:
        known = [r.id for ps in sets for p in ps.of_kind("ApprovalPolicy") for r in p.rules]
        refuse_unknown("--approve-rules", sorted(names), known, "approval rule")
    return names


def _witness(store: AuditStore, signer: Any, directory: str | None, every: int,
             seconds: int) -> Witness | None:
    if signer is None or directory is None:
        return None
    from engine.audit.witness import Witness
    return Witness(store, signer, Path(directory), every_records=every,
                   every=timedelta(seconds=seconds))


class _progress:
    """A progress bar on a terminal; a line a year when piped."""

    def __enter__(self) -> _Tick:
        self.bar: Progress | None = None
        if sys.stderr.isatty():
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                MofNCompleteColumn(), TimeElapsedColumn(), console=err)
            self.bar.start()
        return _Tick(self.bar)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


class _Tick:
    def __init__(self, bar: Progress | None) -> None:
        self.bar = bar
        self.task: TaskID | None = None
        self.year = ""

    def __call__(self, p: ReplayProgress) -> None:
        if self.bar is not None:
            if self.task is None:
                self.task = self.bar.add_task("replaying", total=p.days)
            self.bar.update(self.task, completed=p.day, description=f"replaying {p.ts[:10]}")
            return
        year = p.ts[:4]
        if year != self.year or p.day == p.days:
            self.year = year
            print(f"day {p.day}/{p.days}: {p.ts[:10]}", file=sys.stderr, flush=True)
