"""The one place that decides whether an authenticated actor may take an action."""

from __future__ import annotations

from dataclasses import dataclass

from engine.access.model import ACTIONS, AccessPolicy


@dataclass(frozen=True)
class Actor:
    """Who acts, as authenticated: a person or service account of the access policy."""

    name: str
    kind: str  # person | service
    #: How the identity was established: "os-user NAME" or "token ID".
    via: str


class AccessDenied(Exception):
    """An action refused: who tried (as far as known), what, and why."""

    def __init__(self, who: str, action: str, reason: str, via: str = "") -> None:
        self.who = who
        self.action = action
        self.reason = reason
        self.via = via
        super().__init__(f"{who} may not {action}: {reason}")


def authorise(access: AccessPolicy, actor: Actor, action: str) -> None:
    """Return when `actor` holds a role allowing `action`; raise AccessDenied otherwise.
    The actor is looked up again in the policy: an identity the policy no longer names has
    no rights, whatever it was when it was established."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    principal = access.principal(actor.name)
    if principal is None or principal.kind != actor.kind:
        raise AccessDenied(actor.name, action, f"not a {actor.kind} of access policy "
                           f"{access.name} {access.version}", actor.via)
    if action not in access.actions_of(principal):
        roles = ", ".join(access.roles_allowing(action)) or "no role"
        held = ", ".join(sorted(principal.roles))
        raise AccessDenied(actor.name, action, f"needs role {roles}; {actor.name} holds "
                           f"{held}", actor.via)
