"""Reading the access policy file: the same reader, schema and checks as every policy."""

from __future__ import annotations

from engine.access.model import KIND, AccessPolicy, from_policy
from engine.policy.loader import load_policy_set
from engine.policy.problems import PolicyError, Position, Problem


def load_access(path: str) -> AccessPolicy:
    """The one AccessPolicy of `path`; PolicyError (FILE:LINE:COL) otherwise."""
    policies = load_policy_set([path]).policies
    found = [p for p in policies if p.kind == KIND]
    if len(found) != 1 or len(policies) != 1:
        raise PolicyError([Problem(Position(path, 1, 1),
                                   f"expected exactly one {KIND} here, found "
                                   + (", ".join(f"{p.kind} {p.name}" for p in policies)
                                      or "nothing"))])
    return from_policy(found[0])
