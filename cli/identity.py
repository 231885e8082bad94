"""Who is acting on the command line: authenticate, authorise, record; exit 1 when refused."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from cli.common import fail
from cli.plain import write_lines
from engine.access.authorise import AccessDenied, Actor, authorise
from engine.access.identity import from_os_user, os_user
from engine.access.journal import record_allowed, record_refused
from engine.access.loading import load_access
from engine.access.model import AccessPolicy
from engine.access.tokens import from_token
from engine.audit.store import AuditStore
from engine.policy.problems import PolicyError
from engine.timeutil import utc_now

DEFAULT_ACCESS = "policies/access.yaml"
ACCESS_ENV = "FUGGER_ACCESS"
#: An API token (fugger token create): the identity of a program, or of a person acting
#: through one, instead of the OS user.
TOKEN_ENV = "FUGGER_TOKEN"

AccessOpt = Annotated[str, typer.Option(
    "--access", envvar=ACCESS_ENV, metavar="FILE",
    help="The access policy: who may do what (default policies/access.yaml).")]
ByOpt = Annotated[str, typer.Option(
    "--by", metavar="NAME", help="Who acts; must be the authenticated person (the OS user's, "
                                 "or the token's): a check, never a way to choose.")]


def authorised(store: AuditStore, access_path: str, action: str, *, by: str = "",
               target: str | None = None, run_id: str | None = None) -> Actor:
    """The authenticated actor, allowed to take `action` on `target`; otherwise the refusal
    is recorded, alerted, and the command exits 1."""
    access = _access(store, access_path, action, by, target)
    token = os.environ.get(TOKEN_ENV)
    try:
        # A token, when given, is the identity: a bad one is refused, never replaced by the
        # OS user's.
        actor = (from_token(store, access, token, action, claimed=by, now=utc_now())
                 if token is not None else from_os_user(access, os_user(), action, by))
        authorise(access, actor, action)
    except AccessDenied as e:
        record_refused(store, e, target, access, run_id)
        fail(f"refused: {e}")
    record_allowed(store, access, actor, action, target)
    return actor


def _access(store: AuditStore, path: str, action: str, by: str,
            target: str | None) -> AccessPolicy:
    try:
        return load_access(path)
    except PolicyError as e:
        for p in e.problems:
            write_lines(p, sys.stderr)
        reason = (f"the access policy {path} does not load: "
                  + "; ".join(str(p) for p in e.problems[:3]))
        record_refused(store, AccessDenied(by or f"os-user:{os_user()}", action, reason,
                                           f"os-user {os_user()}"), target)
        fail(f"refused: {reason}")

