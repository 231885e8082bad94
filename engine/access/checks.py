"""What the schema cannot say about an AccessPolicy: roles that exist, names used once, no
reserved system name for a person, one OS user per person."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from engine.access.model import REQUIRED_ROLES, RESERVED_NAMES, SYSTEM, is_reserved
from engine.policy.problems import Problem
from engine.policy.yamlsource import YamlDocument, position_of


def access_problems(doc: YamlDocument) -> Iterator[Problem]:
    spec = doc.data.get("spec")
    if not isinstance(spec, Mapping):
        return
    roles = spec.get("roles")
    defined = set(roles) if isinstance(roles, Mapping) else set()
    if isinstance(roles, Mapping):
        missing = [r for r in REQUIRED_ROLES if r not in roles]
        if missing:
            yield _at(doc, ("spec", "roles"), f"spec.roles: missing role(s) "
                      f"{', '.join(missing)} (every access policy defines "
                      f"{', '.join(REQUIRED_ROLES)})", key=True)
    seen: dict[str, int] = {}
    users: dict[str, int] = {}
    for group in ("people", "services"):
        entries = spec.get(group)
        if not isinstance(entries, list):
            continue
        for i, entry in enumerate(entries):
            if not isinstance(entry, Mapping):
                continue
            yield from _entry_problems(doc, group, i, entry, defined, seen, users)


def _entry_problems(doc: YamlDocument, group: str, i: int, entry: Mapping[str, Any],
                    defined: set[str], seen: dict[str, int],
                    users: dict[str, int]) -> Iterator[Problem]:
    where = ("spec", group, i)
    name = entry.get("name")
    if isinstance(name, str):
        if is_reserved(name):
            yield _at(doc, (*where, "name"),
                      f"'{name}' is a reserved system name ({', '.join(sorted(RESERVED_NAMES))}"
                      f" and every name starting with '{SYSTEM}'): the system is never a "
                      "person or a service account of the policy")
        elif name in seen:
            yield _at(doc, (*where, "name"),
                      f"'{name}' is named twice (first at line {seen[name]})")
        else:
            seen[name] = position_of(doc.data, (*where, "name"), doc.path).line
    user = entry.get("os_user")
    if isinstance(user, str):
        if user in users:
            yield _at(doc, (*where, "os_user"), f"OS user '{user}' is already mapped to "
                      f"another person (line {users[user]}): one OS user is one person")
        else:
            users[user] = position_of(doc.data, (*where, "os_user"), doc.path).line
    roles = entry.get("roles")
    if isinstance(roles, list) and defined:
        for j, role in enumerate(roles):
            if isinstance(role, str) and role not in defined:
                yield _at(doc, (*where, "roles", j), f"unknown role '{role}' (defined: "
                          f"{', '.join(sorted(defined))})")


def _at(doc: YamlDocument, path: tuple[str | int, ...], message: str, *,
        key: bool = False) -> Problem:
    return Problem(position_of(doc.data, path, doc.path, key=key), message)
