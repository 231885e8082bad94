"""UTC timestamps: the only form FuggerBot reads and writes is ISO-8601 in UTC."""

from __future__ import annotations

from datetime import UTC, datetime


class TimestampError(ValueError):
    pass


def parse_utc(text: object) -> datetime:
    """Parse an ISO-8601 timestamp that states UTC (`Z` or `+00:00`); anything else is refused,
    because a time without a zone cannot be compared with a freshness limit."""
    if not isinstance(text, str):
        raise TimestampError(f"expected an ISO-8601 UTC timestamp string, got {text!r}")
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


def format_utc(value: datetime, timespec: str = "auto") -> str:
    """`value` in UTC as ISO-8601 ending in `Z`; `timespec` as for `datetime.isoformat`."""
    text = value.astimezone(UTC).isoformat(timespec=timespec)
    return text.replace("+00:00", "Z")


def utc_now() -> datetime:
    return datetime.now(UTC)
