"""fugger token: API tokens for programs (create, list, revoke); the admin role."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.table import Table

from cli.common import Format, FormatOpt, fail, out
from cli.identity import DEFAULT_ACCESS, AccessOpt, authorised
from cli.plain import write_lines
from engine.access.loading import load_access
from engine.access.tokens import TokenError, create, listing, revoke
from engine.audit.store import DEFAULT_PATH, AuditError, AuditStore
from engine.policy.duration import parse_duration
from engine.policy.problems import PolicyError
from engine.timeutil import utc_now

app = typer.Typer(help="API tokens: shown once, stored as a hash, revocable, expiring.",
                  no_args_is_help=True)

AuditOpt = Annotated[str, typer.Option("--audit", metavar="DB", help="The audit store.")]


def _store(path: str) -> AuditStore:
    try:
        return AuditStore(path)
    except AuditError as e:
        fail(str(e))


@app.command("create")
def create_cmd(
    holder: Annotated[str, typer.Option("--for", metavar="NAME",
                                        help="The person or service account it acts as.")],
    expires: Annotated[str, typer.Option(
        metavar="DURATION", help="Lifetime: 90d, 12h, ... (at most 366d).")] = "90d",
    audit: AuditOpt = DEFAULT_PATH,
    access: AccessOpt = DEFAULT_ACCESS,
) -> None:
    """Create a token and print it once: only its hash is kept."""
    try:
        ttl = parse_duration(expires)
    except ValueError:
        fail(f"--expires {expires!r} is not a duration: write e.g. 90d or 12h", 2)
    with _store(audit) as store:
        actor = authorised(store, access, "manage_tokens", target=holder)
        try:
            policy = load_access(access)
            token, info = create(store, policy, holder, by=actor.name, ttl=ttl, now=utc_now())
        except (TokenError, PolicyError) as e:
            fail(str(e))
    print(token)
    write_lines(f"token {info.token_id} for {holder}, expires {info.expires_at}; it is shown "
                "this once: give it to its holder as FUGGER_TOKEN", sys.stderr)


@app.command("list")
def list_cmd(audit: AuditOpt = DEFAULT_PATH, access: AccessOpt = DEFAULT_ACCESS,
             fmt: FormatOpt = Format.text) -> None:
    """Every token ever created: holder, expiry, state (never the token itself)."""
    now = utc_now()
    with _store(audit) as store:
        authorised(store, access, "manage_tokens")
        tokens = listing(store)
    if fmt is Format.json:
        for t in tokens:
            sys.stdout.write(json.dumps({**t.__dict__, "state": t.state(now)}) + "\n")
        return
    table = Table("id", "holder", "created", "by", "expires", "state", title="API tokens",
                  title_justify="left")
    for t in tokens:
        table.add_row(t.token_id, t.holder, t.created_at, t.created_by, t.expires_at,
                      t.state(now) + (f" by {t.revoked_by}" if t.revoked_by else ""))
    out.print(table)


@app.command("revoke")
def revoke_cmd(token_id: Annotated[str, typer.Argument(metavar="ID")],
               audit: AuditOpt = DEFAULT_PATH, access: AccessOpt = DEFAULT_ACCESS) -> None:
    """Revoke a token: it authenticates nobody from now on."""
    with _store(audit) as store:
        actor = authorised(store, access, "manage_tokens", target=token_id)
        try:
            info = revoke(store, token_id, by=actor.name, now=utc_now())
        except TokenError as e:
            fail(str(e))
    out.print(f"token {info.token_id} of {info.holder} revoked by {actor.name}")
