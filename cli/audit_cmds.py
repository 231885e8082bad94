"""fugger audit: list, show, why, verify."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.common import Format, check_day_range, day_option, fail, out, refuse_unknown, resolve_ref
from cli.plain import write_lines
from engine.audit.checkpoint import (
    DEFAULT_KEY,
    KEY_ENV,
    CheckpointError,
    keygen,
    latest_in,
    load_private,
    load_public,
    public_path,
    read,
    take,
    write,
)
from engine.audit.checkpoint import verify as verify_checkpoints
from engine.audit.kinds import RECORD_KINDS
from engine.audit.store import DEFAULT_PATH, AuditError, AuditStore, Record
from engine.audit.why import explain_record
from engine.ids import short
from engine.timeutil import utc_now

app = typer.Typer(help="Read and check the audit store: decisions, orders, policy activations.",
                  no_args_is_help=True)

AuditOpt = Annotated[str, typer.Option("--audit", metavar="DB", help="The audit store.")]
FormatOpt = Annotated[Format, typer.Option("--format", help="text for people, json for "
                                                            "programs (one object per line).")]


def _open(path: str) -> AuditStore:
    try:
        return AuditStore(path, create=False)
    except AuditError as e:
        fail(str(e))


_FILTERED_TIME = ("the market time of a record (the ts of its snapshot, order or alert; the "
                  "recorded time for a record without one), in UTC")


@app.command("list")
def list_cmd(
    audit: AuditOpt = DEFAULT_PATH,
    kind: Annotated[str | None, typer.Option(
        metavar="KIND", help="Only records of this kind, e.g. decision, order, "
                             "policy_activation, alert.", show_default=False)] = None,
    limit: Annotated[int, typer.Option(min=1, metavar="N", help="How many records.")] = 20,
    status: Annotated[str | None, typer.Option(
        metavar="STATUS", help="Only records with this status, e.g. denied, pending_approval, "
                               "filled.", show_default=False)] = None,
    since: Annotated[str | None, day_option(
        "--from", f"Only records on or after this day, by {_FILTERED_TIME}.")] = None,
    until: Annotated[str | None, day_option(
        "--to", "Only records on or before this day, by the same market time.")] = None,
    oldest_first: Annotated[bool, typer.Option(
        "--oldest-first", help="Oldest records first (default: newest first).")] = False,
    ids_only: Annotated[bool, typer.Option("--ids-only", help="Print only the ids.")] = False,
    fmt: FormatOpt = Format.text,
) -> None:
    """The newest records, one line each, optionally filtered. The market time is the time a
    record is about (a snapshot's ts); the recorded time is when the store wrote it."""
    check_day_range(since, until)
    with _open(audit) as store:
        if kind is not None:
            refuse_unknown("--kind", [kind], {*RECORD_KINDS, *store.kinds()}, "record kind")
        # Streamed: a filter may pass over the whole store, one record at a time; ids and
        # JSON lines go out as they are found, only a table waits for its (limited) rows.
        found = (r for r in store.iter_records(kind, newest_first=not oldest_first)
                 if _matches(r, status, since, until))
        chosen = itertools.islice(found, limit)
        if ids_only:
            for r in chosen:
                write_lines(r.ref)
            return
        if fmt is Format.json:
            for r in chosen:
                sys.stdout.write(json.dumps({"seq": r.seq, "kind": r.kind, "ref": r.ref,
                                             "market_time": market_time(r), "recorded": r.ts,
                                             "ts": r.ts, "summary": summary(r)}) + "\n")
            return
        rows = list(chosen)
    table = Table(title=f"{audit}: {'oldest' if oldest_first else 'newest'} {len(rows)} "
                        "record(s)", title_justify="left")
    for c in ("seq", "market time", "recorded", "kind", "id", "summary"):
        table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(str(r.seq), market_time(r), r.ts, r.kind, short(r.ref), summary(r))
    out.print(table)


def market_time(r: Record) -> str:
    """The time a record is about: its body's ts (a decision's snapshot ts), else when it was
    recorded."""
    b = r.body if isinstance(r.body, dict) else {}
    decision = b.get("decision")
    inner = decision.get("ts") if isinstance(decision, dict) else None
    return str(b.get("ts") or inner or r.ts)


def _matches(r: Record, status: str | None, since: str | None, until: str | None) -> bool:
    b = r.body
    if status is not None and b.get("status") != status:
        return False
    day = market_time(r)[:10]
    return (since is None or day >= since) and (until is None or day <= until)


def summary(r: Record) -> str:
    b = r.body
    if r.kind == "decision":
        d = b.get("decision", {})
        rule = (d.get("deciding_rule") or {}).get("rule", "-")
        return f"{d.get('symbol')} {d.get('action')} ({rule})"  # its ts is the market time
    if r.kind == "policy_activation":
        names = ", ".join(f"{p['name']} {p['version']}" for p in b.get("policies", []))
        return f"by {b.get('activated_by')}: {names}"
    text = b.get("summary")
    return str(text) if text else json.dumps(b, default=str)[:100]


def _lookup(store: AuditStore, text: str, audit: str) -> list[Record]:
    """The records about what a person typed: a whole ref, a record number, or a unique
    prefix of a ref (the short form tables show). An ambiguous prefix exits 2 listing the
    candidates."""
    rows = store.lookup(text)
    if rows:
        return rows
    ref = resolve_ref(store, text, what=f"id in {audit}")
    rows = store.find(ref) if ref != text else []
    if not rows:
        fail(f"no record with id {text!r} in {audit}")
    return rows


@app.command("show")
def show(
    record_id: Annotated[str, typer.Argument(
        metavar="ID", help="Decision id, order id, policy hash (or a unique start of one, "
                           "e.g. the short hash tables show) or record seq.")],
    audit: AuditOpt = DEFAULT_PATH,
) -> None:
    """Every record about ID, as stored (JSON)."""
    with _open(audit) as store:
        rows = _lookup(store, record_id, audit)
    for r in rows:
        doc: dict[str, Any] = {"seq": r.seq, "kind": r.kind, "ref": r.ref, "recorded": r.ts,
                               "hash": r.hash, "prev_hash": r.prev_hash, "body": r.body}
        sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


@app.command("why")
def why(
    record_id: Annotated[str, typer.Argument(
        metavar="ID", help="A decision id, order id or policy hash, or a unique start of "
                           "one.")],
    audit: AuditOpt = DEFAULT_PATH,
    fmt: FormatOpt = Format.text,
) -> None:
    """Which rule decided, under which policy version, on which values; the decision is
    re-evaluated from the recorded policy text and facts to show it is reproducible."""
    with _open(audit) as store:
        rows = _lookup(store, record_id, audit)
        try:
            report = explain_record(store, rows)
        except ValueError as e:
            fail(str(e))
    if fmt is Format.json:
        sys.stdout.write(json.dumps(report.to_json(), default=str) + "\n")
        return
    for line in report.lines:
        out.print(line)


KeyOpt = Annotated[str, typer.Option(
    "--key", envvar=KEY_ENV, metavar="FILE",
    help="The Ed25519 signing key, kept outside the store (mode 0600).")]


@app.command("keygen")
def keygen_cmd(key: KeyOpt = str(DEFAULT_KEY)) -> None:
    """Make the signing key for checkpoints (FILE, mode 0600, never overwritten) and its
    public half (FILE.pub), which verifiers trust."""
    try:
        public = keygen(Path(key))
    except CheckpointError as e:
        fail(str(e))
    out.print(f"signing key {key} (mode 0600); public key {public}", markup=False)


@app.command("checkpoint")
def checkpoint_cmd(
    audit: AuditOpt = DEFAULT_PATH,
    key: KeyOpt = str(DEFAULT_KEY),
    witness: Annotated[str, typer.Option(metavar="DIR", help="Where the checkpoint is kept: "
                                                             "somewhere the store's writers "
                                                             "cannot reach.")] =
    ".fugger/witness",
) -> None:
    """Sign {store id, seq, head hash, time} and the records since the last checkpoint in
    DIR; write it there and print its path."""
    try:
        signer = load_private(Path(key))
        with _open(audit) as store:
            cp = take(store, signer, utc_now(), latest_in(Path(witness), store.store_id))
            path = write(cp, Path(witness))
    except CheckpointError as e:
        fail(str(e))
    out.print(f"{path}: seq {cp.seq}, head {cp.head_hash}", markup=False)


@app.command("verify")
def verify(
    audit: AuditOpt = DEFAULT_PATH,
    checkpoints: Annotated[list[str] | None, typer.Option(
        "--checkpoint", metavar="FILE", help="A signed checkpoint the store must still "
                                             "agree with (repeatable).")] = None,
    public_key: Annotated[str | None, typer.Option(
        metavar="FILE", help="The trusted public key (default: the signing key's FILE.pub)."
    )] = None,
    key: KeyOpt = str(DEFAULT_KEY),
) -> None:
    """Check the hash chain and, with --checkpoint, that the store still holds at each
    checkpoint's seq the very record it signed; exit 1 naming the first bad seq."""
    with _open(audit) as store:
        if not checkpoints:
            result = store.verify()
        else:
            try:
                trusted = load_public(Path(public_key) if public_key
                                      else public_path(Path(key)))
                cps = [(f, read(Path(f))) for f in checkpoints]
                result = verify_checkpoints(store, cps, trusted)
            except CheckpointError as e:
                print(f"{audit}: checkpoint refused: {e}", file=sys.stderr)
                raise typer.Exit(1) from e
    if not result.ok:
        print(f"{audit}: TAMPERED at seq {result.first_bad_seq}: {result.message}",
              file=sys.stderr)
        raise typer.Exit(1)
    against = f"; agrees with {len(checkpoints)} checkpoint(s)" if checkpoints else ""
    out.print(f"{audit}: ok, {result.checked} records, chain intact; head "
              f"{result.head_hash}{against}")
