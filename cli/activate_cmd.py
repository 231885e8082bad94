"""fugger activate: put a policy set in force on purpose, recorded with who and why."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import EXIT_USAGE, fail, load_policies, out
from cli.identity import DEFAULT_ACCESS, AccessOpt, authorised
from engine.audit import activation
from engine.audit.store import DEFAULT_PATH, AuditError, AuditStore
from engine.ids import short
from engine.policy.removal import removed


def activate(
    reason: Annotated[str, typer.Option(metavar="TEXT",
                                        help="Why this set goes into force (recorded).")],
    policies: Annotated[str, typer.Option("--policies", "-p", metavar="DIR",
                                          help="The policy set to put in force.")] = "policies",
    audit: Annotated[str, typer.Option("--audit", metavar="DB", help="Audit store.")] =
    DEFAULT_PATH,
    allow_removal: Annotated[bool, typer.Option(
        "--allow-removal", help="Allow the set to remove policies of the set in force.")] =
    False,
    access: AccessOpt = DEFAULT_ACCESS,
) -> None:
    """Record POLICIES as the set in force, with who activated it and why. This is the only
    way to remove a policy (e.g. delete approval.yaml) from the set a running `fugger run`
    watches: a reload alone never removes one. The run takes the set at its next poll.
    Needs the admin role."""
    if not reason.strip():
        fail("--reason is required: say why this set goes into force", EXIT_USAGE)
    ps = load_policies([policies])
    try:
        with AuditStore(audit) as store:
            actor = authorised(store, access, "activate", target=ps.hash)
            gone = removed(activation.in_force(store), ps)
            if gone and not allow_removal:
                names = ", ".join(f"{m} ({m.path})" for m in gone)
                fail(f"{policies}: activating this set would remove {names}; pass "
                     "--allow-removal to remove on purpose. Nothing was recorded")
            activation.record_explicit(store, ps, reason=reason.strip(), removed=gone,
                                       actor=actor.name)
    except AuditError as e:
        fail(str(e))
    versions = ", ".join(f"{p.name} {p.version}" for p in ps.policies)
    out.print(f"policy set {short(ps.hash)} activated: {versions}", markup=False)
    for m in gone:
        out.print(f"  removed: {m} ({m.path})", markup=False)
