"""Named counters and gauges, each with a bounded history of (ts, value) points."""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Literal

from engine.monitoring.alert import utc_timestamp

SeriesKind = Literal["counter", "gauge"]


@dataclass(frozen=True)
class SeriesSnapshot:
    """One series as it was when the snapshot was taken; `points` oldest first."""

    name: str
    kind: SeriesKind
    value: float
    points: tuple[tuple[str, float], ...]
    #: Points pushed out of the history by newer ones.
    dropped_points: int

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "value": self.value,
            "points": [[ts, v] for ts, v in self.points],
            "dropped_points": self.dropped_points,
        }


@dataclass(frozen=True)
class MetricsSnapshot:
    series: MappingProxyType[str, SeriesSnapshot]
    #: Updates refused because `max_series` series already existed.
    dropped_series_updates: int

    @property
    def counters(self) -> dict[str, float]:
        return {n: s.value for n, s in self.series.items() if s.kind == "counter"}

    @property
    def gauges(self) -> dict[str, float]:
        return {n: s.value for n, s in self.series.items() if s.kind == "gauge"}

    def to_json(self) -> dict[str, object]:
        return {
            "counters": self.counters,
            "gauges": self.gauges,
            "series": {n: s.to_json() for n, s in self.series.items()},
            "dropped_series_updates": self.dropped_series_updates,
        }


class _Series:
    __slots__ = ("dropped", "kind", "points", "value")

    def __init__(self, kind: SeriesKind, max_points: int) -> None:
        self.kind: SeriesKind = kind
        self.value = 0.0
        self.points: deque[tuple[str, float]] = deque(maxlen=max_points)
        self.dropped = 0


class Metrics:
    """Counters (only grow) and gauges (set to a value), thread-safe.

    Each series keeps at most `max_points` points and there are at most `max_series` series, so
    memory stays bounded however long a run lasts. An update to a series that would be one too
    many is counted in `dropped_series_updates` rather than raised: metrics must never stop the
    run they observe.
    """

    def __init__(self, max_points: int = 10_000, *, max_series: int = 1_000) -> None:
        for label, value in (("max_points", max_points), ("max_series", max_series)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{label} must be an integer >= 1, got {value!r}")
        self.max_points = max_points
        self.max_series = max_series
        self._series: dict[str, _Series] = {}
        self._dropped_series_updates = 0
        self._lock = threading.Lock()

    def inc(self, name: str, amount: float = 1.0, *, ts: str | datetime | None = None) -> None:
        """Add `amount` (>= 0) to counter `name` and record its new total at `ts`."""
        number = _finite(name, amount)
        if number < 0:
            raise ValueError(f"counter {name!r} can only grow; got an increment of {amount!r}")
        self._record(name, "counter", number, _ts(ts), add=True)

    def set(self, name: str, value: float, *, ts: str | datetime | None = None) -> None:
        """Set gauge `name` to `value` at `ts`."""
        self._record(name, "gauge", _finite(name, value), _ts(ts), add=False)

    def value(self, name: str) -> float | None:
        """The current value of `name`; None when it has never been updated."""
        with self._lock:
            series = self._series.get(name)
            return None if series is None else series.value

    def snapshot(self) -> MetricsSnapshot:
        """Every series as it is now, names sorted."""
        with self._lock:
            series = {
                name: SeriesSnapshot(name, s.kind, s.value, tuple(s.points), s.dropped)
                for name, s in sorted(self._series.items())
            }
            return MetricsSnapshot(MappingProxyType(series), self._dropped_series_updates)

    def _record(self, name: str, kind: SeriesKind, number: float, ts: str, *, add: bool) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"a metric name must be a non-empty string, got {name!r}")
        with self._lock:
            series = self._series.get(name)
            if series is None:
                if len(self._series) >= self.max_series:
                    self._dropped_series_updates += 1
                    return
                series = self._series[name] = _Series(kind, self.max_points)
            elif series.kind != kind:
                raise ValueError(f"metric {name!r} is a {series.kind}, not a {kind}")
            series.value = series.value + number if add else number
            if len(series.points) == series.points.maxlen:
                series.dropped += 1
            series.points.append((ts, series.value))


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"metric {name!r}: value must be a finite number, got {value!r}")
    return float(value)


def _ts(ts: str | datetime | None) -> str:
    if ts is None:
        return utc_timestamp()
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            raise ValueError(f"metric timestamp {ts!r} has no time zone")
        return utc_timestamp(ts)
    if isinstance(ts, str) and ts.endswith("Z"):
        return ts
    raise ValueError(f"metric timestamp {ts!r} is not UTC ISO-8601 ending in 'Z'")
