"""The safety actions and their order: the one place that says which action is more restrictive."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Action(StrEnum):
    """A safety action, declared from most to least restrictive (FuggerBot v2.0 order)."""

    HALT = "halt"
    FLATTEN = "flatten"
    BLOCK_NEW = "block_new"
    WAIT_CONFIRMATION = "wait_confirmation"
    ALLOW = "allow"

    @property
    def severity(self) -> int:
        """Higher is more restrictive: allow is 0, halt is 4."""
        return _SEVERITY[self]


_ORDER: tuple[Action, ...] = tuple(Action)
_SEVERITY: dict[Action, int] = {a: len(_ORDER) - 1 - i for i, a in enumerate(_ORDER)}

ACTION_NAMES: tuple[str, ...] = tuple(a.value for a in _ORDER)

#: The weakest action a safety policy may fail closed to: a fact that is missing, NaN or stale
#: must at least stop new positions, never merely wait for one approval.
FAIL_CLOSED_FLOOR = Action.BLOCK_NEW


def most_restrictive(actions: Iterable[Action]) -> Action:
    """The most restrictive of `actions`; `allow` when there are none."""
    return max(actions, key=_SEVERITY.__getitem__, default=Action.ALLOW)
