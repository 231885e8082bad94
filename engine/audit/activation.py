"""Explicit activations: a person puts a policy set in force on purpose, with a reason.

This is the only way a policy leaves the set in force. A reload never removes one; a running
job takes a set that removes policies only when the newest activation in its audit store is
an explicit one of exactly that set (so a later activation, of any set, supersedes it).
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.audit.store import AuditStore, Record, activation_body
from engine.policy.model import PolicySet
from engine.policy.removal import Member

KIND = "policy_activation"


def in_force(store: AuditStore) -> tuple[Member, ...]:
    """The policies of the newest activation that something trades under (the live book's or
    a run's); an evaluation's set, which only decided, never stands in for it. With no such
    activation, the newest of any scope (none when nothing was recorded)."""
    latest = next((r for r in store.iter_records(KIND, newest_first=True)
                   if r.body.get("scope") in ("live", "run")), None) or store.latest(KIND)
    if latest is None:
        return ()
    return tuple(sorted(Member(str(p.get("kind")), str(p.get("name")), str(p.get("path")))
                        for p in latest.body.get("policies", ())))


def record_explicit(store: AuditStore, policy_set: PolicySet, *, reason: str,
                    removed: Sequence[Member], actor: str | None = None) -> Record:
    """Record `policy_set` as put in force on purpose, naming the policies it removes."""
    body = activation_body(policy_set, actor)
    # The set the live book trades under from now on (`fugger step` reads it as such).
    body.update({"explicit": True, "reason": reason, "scope": "live", "run_id": None,
                 "removed": [{"kind": m.kind, "name": m.name, "path": m.path}
                             for m in removed]})
    return store.append(KIND, policy_set.hash, body)


def explicitly_active(store: AuditStore, policy_set: PolicySet) -> bool:
    """Whether the newest activation in `store` is an explicit one of exactly `policy_set`."""
    latest = store.latest(KIND)
    return latest is not None and latest.ref == policy_set.hash and \
        latest.body.get("explicit") is True
