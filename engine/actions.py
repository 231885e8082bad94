"""The actions and their orders: the one place that says which action is more restrictive.

Two scales: the safety actions judge a symbol (the rails), the order actions judge one order
(the pre-trade controls of an OrderPolicy)."""

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


class OrderAction(StrEnum):
    """What the pre-trade controls do with one order, from most to least restrictive:
    halt > reduce_only > deny > require_approval > send."""

    HALT = "halt"  # refuse it and latch a halt of the whole book
    REDUCE_ONLY = "reduce_only"  # latch REDUCING: orders that open or grow are refused
    DENY = "deny"  # refuse this order only
    REQUIRE_APPROVAL = "require_approval"  # queue it for a person
    SEND = "send"

    @property
    def severity(self) -> int:
        """Higher is more restrictive: send is 0, halt is 4."""
        return _ORDER_SEVERITY[self]


_ORDER_ACTIONS: tuple[OrderAction, ...] = tuple(OrderAction)
_ORDER_SEVERITY: dict[OrderAction, int] = {
    a: len(_ORDER_ACTIONS) - 1 - i for i, a in enumerate(_ORDER_ACTIONS)}

#: The actions an OrderPolicy rule may take (send is what happens when none fires).
ORDER_RULE_ACTIONS: tuple[str, ...] = tuple(a.value for a in _ORDER_ACTIONS
                                            if a is not OrderAction.SEND)

#: The weakest action an order policy may fail closed to: an order whose facts cannot be
#: computed is refused, never merely queued for a person.
ORDER_FAIL_CLOSED_FLOOR = OrderAction.DENY


def most_restrictive_order(actions: Iterable[OrderAction]) -> OrderAction:
    """The most restrictive of `actions`; `send` when there are none."""
    return max(actions, key=_ORDER_SEVERITY.__getitem__, default=OrderAction.SEND)
