"""fugger verify-backend: the vectorised backend against durable-rules on every snapshot."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cli.common import EXIT_INVALID, Format, MaxSnapshotOpt, fail, load_policies, open_facts
from cli.plain import write_lines
from engine.backends.agreement import Agreement, verify
from engine.factsource import DEFAULT_MAX_SNAPSHOT_BYTES


def verify_backend(
    policies: Annotated[list[str], typer.Option("--policies", "-p", metavar="DIR",
                                                help="The policy set (repeatable).")],
    facts: Annotated[str, typer.Option("--facts", "-f", metavar="FILE",
                                       help="Snapshots (JSONL, JSON or CSV), read as a "
                                            "stream.")],
    fmt: Annotated[Format, typer.Option("--format", help="text or json.")] = Format.text,
    max_snapshot_bytes: MaxSnapshotOpt = DEFAULT_MAX_SNAPSHOT_BYTES,
) -> None:
    """Decide every snapshot of FILE with durable-rules (the engine of record) and with the
    vectorised backend; report how many agree (same action, deciding rule, fired rules and
    fail-closed findings) and how many snapshots a second each decides. Exit 1 naming the
    first snapshot they disagree on."""
    ps = load_policies(policies)
    snaps = open_facts(facts, max_snapshot_bytes=max_snapshot_bytes)
    try:
        result = verify(ps, ((s.where, s.data) for s in snaps))
    except ValueError as e:
        fail(str(e))
    if fmt is Format.json:
        write_lines(json.dumps({"facts": facts, **result.to_json()}))
    else:
        write_lines(_text(result))
    if result.first is not None:
        fail(f"the backends disagree on {result.disagreed} of {result.compared} snapshots; "
             f"first at {result.first.text()}", EXIT_INVALID)


def _text(a: Agreement) -> str:
    lines = []
    for name, seconds in (("durable-rules", a.durable_seconds), ("vector", a.vector_seconds)):
        lines.append(f"{name:<14} {a.compared} snapshots in {seconds:.3f} s "
                     f"({a.rate(a.compared, seconds):,.0f} snapshots/s)")
    lines.append(f"agreement      {a.agreed} of {a.compared} snapshots")
    return "\n".join(lines)
