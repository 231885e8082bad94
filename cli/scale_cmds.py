"""Spreading work over Dask: the --workers and --cluster options, and `fugger sweep`."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from cli.common import (
    EXIT_USAGE,
    Format,
    MaxSnapshotOpt,
    check_day_range,
    day_option,
    fail,
    load_policies,
)
from cli.plain import write_lines
from cli.run_cmd import DEFAULT_APPROVED, approved_rules
from engine.factsource import DEFAULT_MAX_SNAPSHOT_BYTES, FactsError, FactsInput
from engine.history import History
from engine.scale.cluster import ClusterError, open_client

if TYPE_CHECKING:
    from distributed import Client

    from engine.scale.sweep import SweepRow

WorkersOpt = Annotated[int | None, typer.Option(
    "--workers", min=1, metavar="N", show_default=False,
    help="Spread the work over a local Dask cluster of N worker processes.")]
ClusterOpt = Annotated[str | None, typer.Option(
    "--cluster", metavar="dask://HOST:PORT", show_default=False,
    help="Spread the work over this running Dask scheduler (its workers need this "
         "project installed, and for sweep, the facts and portfolio files at the same "
         "paths).")]


@contextmanager
def client_for(workers: int | None, cluster: str | None) -> Iterator[Client | None]:
    """The Dask client of the options given, or None; a bad option exits 2, an unreachable
    scheduler exits 1."""
    try:
        with open_client(workers, cluster) as client:
            yield client
    except ClusterError as e:
        fail(str(e), EXIT_USAGE if "dask://" in str(e) or "not both" in str(e) else 1)


def sweep(
    policies: Annotated[list[str], typer.Option(
        "--policies", "-p", metavar="DIR",
        help="A policy set; repeat for each candidate. The first is the live set the others "
             "are compared with.")],
    facts: Annotated[str, typer.Option("--facts", "-f", metavar="FILE",
                                       help="Snapshots of every day, in time order.")],
    grid: Annotated[list[str] | None, typer.Option(
        "--grid", metavar="RULE[:FACT]=V1,V2",
        help="Candidates made from the live set: one per value of RULE's threshold (name the "
             "FACT when the rule compares several); repeat for more rules, which makes one "
             "candidate per combination (at most 64).")] = None,
    portfolio: Annotated[str, typer.Option(metavar="FILE", help="The starting book.")] =
    "examples/portfolio.yaml",
    start: Annotated[str | None, day_option(
        "--from", "First day replayed, by the snapshots' ts (UTC).")] = None,
    end: Annotated[str | None, day_option("--to", "Last day replayed.")] = None,
    approve_rules: Annotated[str | None, typer.Option(
        metavar="RULES",
        help="Orders held by these approval rules are approved in the cycle that queued "
             f"them, as in fugger run. [default: {DEFAULT_APPROVED}]",
        show_default=False)] = None,
    resume_after: Annotated[int, typer.Option(metavar="DAYS", min=-1,
                                              help="As in fugger run.")] = 5,
    slippage_bps: Annotated[float, typer.Option(
        min=0, metavar="BPS", help="Price slippage of every paper fill, in basis points.")] = 5.0,
    commission: Annotated[float, typer.Option(metavar="USD", min=0, help="Per share.")] = 0.0,
    workers: WorkersOpt = None,
    cluster: ClusterOpt = None,
    fmt: Annotated[Format, typer.Option("--format", help="text or json.")] = Format.text,
    max_snapshot_bytes: MaxSnapshotOpt = DEFAULT_MAX_SNAPSHOT_BYTES,
) -> None:
    """Replay FILE once per policy set (in parallel with --workers or --cluster) and compare
    them: return, drawdown, orders denied, halts, and the decisions that change against the
    first (live) set. Each replay runs in a scratch audit store that is deleted afterwards:
    a sweep trades nothing and activates nothing."""
    from engine.scale.grid import GridError, candidates, parse_axis
    from engine.scale.sweep import SweepSettings
    from engine.scale.sweep import sweep as run_sweep

    if len(policies) < 2 and not grid:
        fail("a sweep compares at least two policy sets: give --policies twice or more, or "
             "--grid", EXIT_USAGE)
    check_day_range(start, end)
    sets = [(p, load_policies([p])) for p in policies]
    try:
        axes = [parse_axis(g) for g in grid or ()]
        sets += candidates(sets[0][1], axes) if axes else []
    except GridError as e:
        fail(str(e), EXIT_USAGE)
    approved = approved_rules(approve_rules, [ps for _, ps in sets])
    history = History(start, end)
    # Checked whole here, so a bad input is refused before any worker starts.
    try:
        with FactsInput(facts, max_snapshot_bytes=max_snapshot_bytes) as source:
            source.check(history.check)
    except FactsError as e:
        write_lines("\n".join(e.messages), sys.stderr)
        fail("nothing was replayed")
    if not history.days_in_range:
        fail(f"{facts}: no snapshot in the chosen days")
    settings = SweepSettings(
        facts=facts, portfolio=portfolio, start=start, end=end,
        approve_rules=approved,
        resume_after=None if resume_after < 0 else resume_after, slippage_bps=slippage_bps,
        commission_per_share=commission)
    with client_for(workers, cluster) as client:
        try:
            rows = run_sweep(sets, settings, client)
        except ValueError as e:
            fail(str(e))
    if fmt is Format.json:
        sys.stdout.write(json.dumps({"facts": facts, "rows": [r.to_json() for r in rows]})
                         + "\n")
    else:
        write_lines(_table(rows))


def _table(rows: list[SweepRow]) -> str:
    head = ("policies", "return", "max drawdown", "orders", "denied", "halted days",
            "halt decisions", "decisions changed", "seconds")
    body = [(r.label, _pct(r.total_return), _pct(r.max_drawdown), str(r.orders),
             str(r.orders_denied), str(r.halted_days), str(r.halt_decisions),
             "live set" if n == 0 else f"{r.decisions_changed} of {r.compared}",
             f"{r.seconds:.1f}") for n, r in enumerate(rows)]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in (head, *body))


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.2f}%"
