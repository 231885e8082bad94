"""The arguments of an alert event, checked: a wrong one raises ValueError naming it."""

from __future__ import annotations

from datetime import datetime

from engine.actions import Action
from engine.timeutil import TimestampError, format_utc, parse_utc

_ACTION_VALUES: tuple[str, ...] = tuple(a.value for a in Action)
TRADING_STATES: tuple[str, ...] = ("ACTIVE", "REDUCING", "HALTED")


def event_time(ts: str | datetime) -> datetime:
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            raise ValueError(f"event time {ts!r} has no time zone; give it in UTC")
        return parse_utc(format_utc(ts))
    try:
        return parse_utc(ts)
    except TimestampError as exc:
        raise ValueError(f"event time: {exc}") from None


def name(label: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{label} must be a non-empty string, got {value!r}")
    return value


def rule_id(rule: object) -> str | None:
    if rule is None:
        return None
    if not isinstance(rule, str) or not rule.strip():
        raise ValueError(f"rule must be a rule id or None, got {rule!r}")
    return rule


def safety_action(action: object) -> Action:
    if isinstance(action, Action):
        return action
    if isinstance(action, str) and action in _ACTION_VALUES:
        return Action(action)
    names = ", ".join(_ACTION_VALUES)
    raise ValueError(f"unknown safety action {action!r}; expected one of {names}")


def trading_state(state: object) -> str:
    value = getattr(state, "value", state)
    if isinstance(value, str) and value.upper() in TRADING_STATES:
        return value.upper()
    raise ValueError(
        f"unknown trading state {state!r}; expected one of {', '.join(TRADING_STATES)}"
    )
