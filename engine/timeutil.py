"""UTC timestamps: the only form FuggerBot reads and writes is ISO-8601 in UTC."""

from __future__ import annotations

import functools
import re
import threading
import time
from datetime import UTC, date, datetime


class TimestampError(ValueError):
    pass


def parse_utc(text: object) -> datetime:
    """Parse an ISO-8601 timestamp that states UTC (`Z` or `+00:00`); anything else is refused,
    because a time without a zone cannot be compared with a freshness limit."""
    if not isinstance(text, str):
        raise TimestampError(f"expected an ISO-8601 UTC timestamp string, got {text!r}")
    return _parse_text(text)


# Snapshots of one cycle share their ts, and a replay reads each ts many times: remember the
# latest few thousand (datetimes are immutable; a refused text raises and is not kept).
@functools.lru_cache(maxsize=4096)
def _parse_text(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as e:
        raise TimestampError(f"{text!r} is not an ISO-8601 timestamp") from e
    if value.tzinfo is None:
        raise TimestampError(f"{text!r} has no time zone; write it in UTC, e.g. "
                             f"{text}Z")
    offset = value.utcoffset()
    if offset is None or offset.total_seconds() != 0:
        raise TimestampError(f"{text!r} is not in UTC; convert it and write Z")
    return value.astimezone(UTC)


_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_day(text: str) -> date:
    """A calendar day written YYYY-MM-DD; anything else (`2008-13-01`, `yesterday`, a time) is
    refused, because a bound that cannot be read must not widen or empty a range unseen."""
    if not _DAY.fullmatch(text):
        raise TimestampError(f"{text!r} is not a day: write YYYY-MM-DD, e.g. 2008-10-01")
    try:
        return date.fromisoformat(text)
    except ValueError as e:
        raise TimestampError(f"{text!r} is not a day of the calendar: {e}") from e


def format_utc(value: datetime, timespec: str = "auto") -> str:
    """`value` in UTC as ISO-8601 ending in `Z`; `timespec` as for `datetime.isoformat`."""
    text = value.astimezone(UTC).isoformat(timespec=timespec)
    return text.replace("+00:00", "Z")


def utc_now() -> datetime:
    return datetime.now(UTC)


_stamp_lock = threading.Lock()
_last_given: tuple[datetime, tuple[int, str]] | None = None
_last_second: tuple[int, str] = (-1, "")


def stamp(when: datetime | None = None) -> tuple[int, str]:
    """`when` (default: now) as milliseconds since the epoch and as the text `format_utc`
    writes; made for every decision, so the last given time and the current second are
    remembered."""
    global _last_given, _last_second
    if when is not None:
        last = _last_given
        if last is not None and last[0] is when:
            return last[1]
        result = (int(when.timestamp() * 1000), format_utc(when))
        _last_given = (when, result)
        return result
    ns = time.time_ns()
    sec, rest = divmod(ns, 1_000_000_000)
    us = rest // 1000
    with _stamp_lock:
        if _last_second[0] != sec:
            _last_second = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)))
        text = _last_second[1]
    return ns // 1_000_000, f"{text}.{us:06d}Z" if us else f"{text}Z"
