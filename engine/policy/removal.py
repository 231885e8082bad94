"""Which policies a new set would take out of force.

A policy leaves the set in force only by an explicit, recorded activation: a reload that
would drop one (a deleted file, a file now holding another kind or name) is a failed change,
because a missing ApprovalPolicy or SafetyPolicy silently turns its controls off.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from engine.policy.model import PolicySet
from engine.policy.problems import Position, Problem

#: How an operator takes a policy out of force on purpose (README: "Removing a policy").
EXPLICIT_REMOVAL = "fugger activate --allow-removal --reason TEXT"


@dataclass(frozen=True, order=True)
class Member:
    """A policy of a set, as much of it as says what would be lost."""

    kind: str
    name: str
    path: str

    def __str__(self) -> str:
        return f"{self.kind} '{self.name}'"


def members(policy_set: PolicySet) -> tuple[Member, ...]:
    return tuple(sorted(Member(p.kind, p.name, p.path) for p in policy_set.policies))


def removed(before: Iterable[Member], after: PolicySet) -> tuple[Member, ...]:
    """The policies of `before` that `after` no longer has (by kind and name)."""
    kept = {(p.kind, p.name) for p in after.policies}
    return tuple(sorted(m for m in before if (m.kind, m.name) not in kept))


def removal_problem(member: Member) -> Problem:
    """The problem a reload reports for a policy it would drop: it names the file."""
    why = ("the file was removed" if not os.path.exists(member.path)
           else "the file no longer defines it")
    return Problem(Position(member.path, 1, 1),
                   f"{member} would be removed from the active set ({why}); a reload never "
                   f"removes a policy: the active set stays in force. To remove it on "
                   f"purpose: {EXPLICIT_REMOVAL}")
