"""What "now" is: the one place that decides it.

Live commands (`step`, `eval`, the approval commands, `resume`) run on the wall clock: a
snapshot's facts are aged against the machine's time, a snapshot dated ahead of it by more than
the policy's `max_clock_skew` is invalid, and an approval's time-to-live counts from the moment
the order was queued. Replays (`run`, `diff`, `fugger test`) run on the snapshot clock, so
history behaves as it did: a snapshot's facts are aged against its own `ts`, and a cycle's now
is its newest snapshot's `ts`. Every decision records the clock it was made on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from engine.timeutil import TimestampError, parse_utc, utc_now

#: How far a snapshot's `ts` may lie ahead of the wall clock (clocks of two machines are never
#: exactly equal); a SafetyPolicy may set its own `max_clock_skew`.
DEFAULT_MAX_CLOCK_SKEW = timedelta(seconds=5)


class ClockKind(StrEnum):
    WALL = "wall"
    SNAPSHOT = "snapshot"


@dataclass(frozen=True)
class Clock:
    kind: ClockKind
    #: A fixed now: the instant one cycle runs at, or the instant a recorded decision was made
    #: (to evaluate it again exactly). None: the wall clock is read at each `now()`.
    at: datetime | None = None

    @property
    def wall(self) -> bool:
        return self.kind is ClockKind.WALL

    def now(self) -> datetime:
        """The instant of deciding: the fixed instant, else the wall clock's time."""
        return self.at if self.at is not None else utc_now()

    def for_cycle(self, snapshots: Iterable[Mapping[str, Any]]) -> Clock:
        """This clock fixed at one cycle's now: the wall time, or the newest snapshot `ts`."""
        if self.wall:
            return Clock(self.kind, self.now())
        times = []
        for s in snapshots:
            try:
                times.append(parse_utc(s.get("ts")))
            except TimestampError:
                continue
        if not times:
            raise ValueError("no snapshot has a usable ts: the cycle has no clock")
        return Clock(self.kind, max(times))


WALL = Clock(ClockKind.WALL)
SNAPSHOT = Clock(ClockKind.SNAPSHOT)


def named(kind: str) -> Clock:
    """The clock called `kind` (wall or snapshot), as a command's `--clock` names it."""
    return Clock(ClockKind(kind))


def wall_now() -> datetime:
    """Now, for what a person does now: approving, rejecting, expiring, resuming."""
    return utc_now()


def recorded_clock(decision: Mapping[str, Any]) -> Clock:
    """The clock a recorded decision (its JSON) was made on, fixed at the instant it was made,
    so evaluating it again sees what it saw. Decisions recorded before clocks were named ran
    on the snapshot clock."""
    kind = ClockKind(decision.get("clock") or ClockKind.SNAPSHOT.value)
    try:
        at: datetime | None = parse_utc(decision.get("decided_at"))
    except TimestampError:
        at = None
    return Clock(kind, at)
