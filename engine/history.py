"""A history of snapshots as days in time order, read as a stream.

A replay holds one day at a time, so the history must come in time order: `check` refuses a
snapshot earlier than the one before it (or without a usable `ts`) while the input is checked
whole, before anything is replayed; `days` then groups consecutive snapshots of one instant.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.factsource import SourcedSnapshot
from engine.timeutil import TimestampError, format_utc, parse_utc


@dataclass
class History:
    """The days of a history between `start` and `end` (YYYY-MM-DD, both included)."""

    start: str | None = None
    end: str | None = None
    days_in_range: int = 0
    symbols: set[str] = field(default_factory=set)
    _last: tuple[datetime, str] | None = None

    def check(self, s: SourcedSnapshot) -> str | None:
        """Why snapshot `s` cannot be replayed after those checked before it, or None; counts
        the days and symbols in range."""
        ts = _when(s.data)
        if ts is None:
            return ("a replay places every snapshot in time: this one has no usable ts "
                    "(an ISO-8601 UTC timestamp)")
        if self._last is not None and ts < self._last[0]:
            return (f"ts {format_utc(ts)} is earlier than {format_utc(self._last[0])} at "
                    f"{self._last[1]}: a replay reads days in time order; sort the file by ts")
        new_day = self._last is None or ts != self._last[0]
        self._last = (ts, s.where)
        if self._contains(ts):
            self.days_in_range += new_day
            symbol = s.data.get("symbol")
            self.symbols.add(str(symbol))
        return None

    def days(self, snapshots: Iterable[Mapping[str, Any]]
             ) -> Iterator[tuple[str, list[Mapping[str, Any]]]]:
        """The snapshots in range, grouped by instant: (ts of the first, snapshots), in the
        order checked."""
        day: list[Mapping[str, Any]] = []
        day_ts: datetime | None = None
        for s in snapshots:
            ts = _when(s)
            if ts is None or not self._contains(ts):
                continue
            if day and ts != day_ts:
                yield str(day[0]["ts"]), day
                day = []
            day_ts = ts
            day.append(s)
        if day:
            yield str(day[0]["ts"]), day

    def _contains(self, ts: datetime) -> bool:
        if self.start is None and self.end is None:
            return True
        day = ts.date().isoformat()  # ts is in UTC (parse_utc)
        return (self.start is None or day >= self.start) and (self.end is None or day <= self.end)


def _when(data: object) -> datetime | None:
    if not isinstance(data, Mapping):
        return None
    try:
        return parse_utc(data.get("ts"))
    except TimestampError:
        return None
