"""The AccessPolicy as frozen data: people, service accounts, roles and what each role may do.

The system itself is never a person: names it writes on its own actions (expiries, automatic
reloads, the declared replay approver and operator) are reserved, and no person or service
account of a policy may take one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.policy.model import Policy

KIND = "AccessPolicy"

#: Every action that changes what may trade, each authorised in one place.
ACTIONS: tuple[str, ...] = ("trade", "approve", "reject", "resume", "kill", "reenable",
                            "activate", "rollback", "init_account", "manage_tokens")
#: The roles every access policy defines (it may define more).
REQUIRED_ROLES: tuple[str, ...] = ("trader", "approver", "risk", "admin")

#: The name the system writes on its own actions; every name starting with it is reserved.
SYSTEM = "fuggerbot"
RESERVED_NAMES: frozenset[str] = frozenset({SYSTEM, "system", "replay-approver",
                                            "replay-operator", "unknown", "anonymous"})


def is_reserved(name: str) -> bool:
    return name in RESERVED_NAMES or name.startswith(SYSTEM)


def run_service(run_id: str) -> str:
    """The service account a run acts as when nobody is at the keyboard (automatic reloads)."""
    return f"{SYSTEM}:run:{run_id}"


@dataclass(frozen=True)
class Principal:
    """A person or a service account named in the access policy."""

    name: str
    kind: str  # person | service
    roles: frozenset[str]
    os_user: str | None = None
    #: The argon2id hash of the person's dashboard password; None: no dashboard log-in.
    password_hash: str | None = None


@dataclass(frozen=True)
class AccessPolicy:
    name: str
    version: str
    path: str
    hash: str
    text: str
    roles: Mapping[str, frozenset[str]]
    principals: Mapping[str, Principal]

    def principal(self, name: str) -> Principal | None:
        return self.principals.get(name)

    def person_for_os_user(self, os_user: str) -> Principal | None:
        for p in self.principals.values():
            if p.kind == "person" and p.os_user == os_user:
                return p
        return None

    def actions_of(self, principal: Principal) -> frozenset[str]:
        out: set[str] = set()
        for role in principal.roles:
            out |= self.roles.get(role, frozenset())
        return frozenset(out)

    def roles_allowing(self, action: str) -> tuple[str, ...]:
        return tuple(sorted(r for r, acts in self.roles.items() if action in acts))


def from_policy(policy: Policy) -> AccessPolicy:
    """The access model of a validated AccessPolicy document."""
    if policy.kind != KIND:
        raise ValueError(f"{policy.path}: a {policy.kind}, not an {KIND}")
    spec: Mapping[str, Any] = policy.spec
    roles = {str(k): frozenset(str(a) for a in v) for k, v in spec["roles"].items()}
    principals: dict[str, Principal] = {}
    for p in spec.get("people", []):
        principals[p["name"]] = Principal(p["name"], "person", frozenset(p["roles"]),
                                          p.get("os_user"), p.get("password"))
    for s in spec.get("services", []):
        principals[s["name"]] = Principal(s["name"], "service", frozenset(s["roles"]))
    return AccessPolicy(policy.name, policy.version, policy.path, policy.hash, policy.text,
                        roles, principals)
