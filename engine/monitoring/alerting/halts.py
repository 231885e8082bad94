"""The book's trading state: entering HALTED, a latched halt outliving its rule, leaving it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from engine.monitoring.alert import Alert, Severity
from engine.monitoring.alerting.recorder import AlertRecorder
from engine.timeutil import format_utc

_HALTED = "HALTED"


@dataclass(frozen=True)
class _Halt:
    since: datetime
    rule: str | None
    alert_id: str
    #: When the rule that halted stopped firing while the halt stayed latched.
    quiet_since: datetime | None = None
    last_reminder: datetime | None = None


class HaltWatch:
    """Entering HALTED is critical; while a latched halt outlives the rule that caused it, one
    warning per `reminder_every`; leaving HALTED is info. Its caller serialises the calls."""

    def __init__(self, recorder: AlertRecorder, reminder_every: timedelta) -> None:
        self._recorder = recorder
        self._reminder_every = reminder_every
        self._state: str | None = None
        self._halt: _Halt | None = None

    def observe(self, moment: datetime, new: str, rule: str | None) -> tuple[Alert, ...]:
        """The book's trading state at `moment`. `rule` is the rule demanding that state now,
        or None when none does (a halt that stays latched after its rule stopped firing)."""
        old, self._state = self._state, new
        if new == _HALTED:
            if old != _HALTED:
                return (self._halted(moment, old, rule),)
            return self._latched(moment, rule)
        if old == _HALTED:
            return (self._resumed(moment, new, rule),)
        return ()

    def _halted(self, moment: datetime, old: str | None, rule: str | None) -> Alert:
        alert = self._recorder.emit(
            moment,
            Severity.CRITICAL,
            "trading_state",
            "trading:halted",
            "Trading halted",
            "all trading is halted"
            + (f" by rule {rule}" if rule else "")
            + "; the halt is latched until a named person resumes",
            {"state": _HALTED, "previous_state": old, "rule": rule},
        )
        self._halt = _Halt(moment, rule, alert.alert_id)
        return alert

    def _latched(self, moment: datetime, rule: str | None) -> tuple[Alert, ...]:
        halt = self._halt if self._halt is not None else _Halt(moment, rule, "")
        if rule is not None:
            self._halt = replace(halt, quiet_since=None)
            return ()
        quiet_since = halt.quiet_since if halt.quiet_since is not None else moment
        due = halt.last_reminder is None or (
            moment - halt.last_reminder >= self._reminder_every
        )
        if not due:
            self._halt = replace(halt, quiet_since=quiet_since)
            return ()
        halt = self._halt = replace(halt, quiet_since=quiet_since, last_reminder=moment)
        days = (moment - halt.since).days
        return (
            self._recorder.emit(
                moment,
                Severity.WARNING,
                "trading_state",
                "trading:halt_latched",
                "Halt still latched",
                f"trading has been halted for {days} day(s)"
                + (f"; rule {halt.rule} no longer fires" if halt.rule else "")
                + f" (since {format_utc(quiet_since)}); a named person must resume",
                {
                    "state": _HALTED,
                    "rule": halt.rule,
                    "halted_since": format_utc(halt.since),
                    "quiet_since": format_utc(quiet_since),
                    "days": days,
                    "halted_alert_id": halt.alert_id or None,
                },
            ),
        )

    def _resumed(self, moment: datetime, new: str, rule: str | None) -> Alert:
        halt, self._halt = self._halt, None
        since = halt.since if halt is not None else moment
        halted_alert_id = halt.alert_id if halt is not None and halt.alert_id else None
        days = (moment - since).days
        return self._recorder.emit(
            moment,
            Severity.INFO,
            "trading_state",
            "trading:halted",
            "Trading resumed",
            f"trading is {new} again after {days} day(s) halted"
            + (f" ({rule})" if rule else ""),
            {
                "state": new,
                "previous_state": _HALTED,
                "rule": rule,
                "halted_since": format_utc(since),
                "days": days,
                "halted_alert_id": halted_alert_id,
            },
        )
