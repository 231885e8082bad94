"""The alert record every sink receives, and its JSON form."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, StrEnum
from types import MappingProxyType
from typing import Any

from engine.timeutil import TimestampError, format_utc, parse_utc, utc_now

_CONTEXT_MAX_DEPTH = 16


class Severity(StrEnum):
    """How urgent an alert is, from least to most."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """0 for info, 2 for critical: compare severities by rank."""
        return _RANK[self]

    @classmethod
    def parse(cls, value: object) -> Severity:
        """The severity named by `value`; ValueError naming the choices otherwise."""
        if isinstance(value, Severity):
            return value
        if isinstance(value, str):
            try:
                return cls(value.strip().lower())
            except ValueError:
                pass
        raise ValueError(f"unknown severity {value!r}; expected one of {', '.join(SEVERITY_NAMES)}")


_RANK: dict[Severity, int] = {s: i for i, s in enumerate(Severity)}
SEVERITY_NAMES: tuple[str, ...] = tuple(s.value for s in Severity)


def utc_timestamp(moment: datetime | None = None) -> str:
    """`moment` (default: now) as UTC ISO-8601 with milliseconds and a trailing `Z`."""
    return format_utc(utc_now() if moment is None else moment, timespec="milliseconds")


def parse_utc_timestamp(ts: str) -> datetime:
    """The instant of a UTC ISO-8601 string ending in `Z`; ValueError otherwise."""
    if not isinstance(ts, str) or not ts.endswith("Z"):
        raise ValueError(f"timestamp {ts!r} is not UTC ISO-8601 ending in 'Z'")
    try:
        return parse_utc(ts)
    except TimestampError:
        raise ValueError(f"timestamp {ts!r} is not UTC ISO-8601 ending in 'Z'") from None


@dataclass(frozen=True)
class Alert:
    """One alert. `key` groups repeats of the same condition (e.g. "safety:SP500:halt").

    `context` is frozen into plain JSON data on construction: nested mappings become read-only,
    sequences become tuples, enums their values, non-finite floats the strings "nan", "inf" and
    "-inf", and any other object its `str()`, so an alert about a bad value can always be sent.
    """

    alert_id: str
    ts: str
    severity: Severity
    kind: str
    key: str
    title: str
    message: str
    context: Mapping[str, object] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        for name in ("alert_id", "kind", "key", "title"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"alert field {name!r} must be a non-empty string, got {value!r}")
        if not isinstance(self.message, str):
            raise ValueError(f"alert field 'message' must be a string, got {self.message!r}")
        parse_utc_timestamp(self.ts)
        object.__setattr__(self, "severity", Severity.parse(self.severity))
        if not isinstance(self.context, Mapping):
            raise ValueError(f"alert field 'context' must be a mapping, got {self.context!r}")
        object.__setattr__(self, "context", _freeze_mapping(self.context, "context", 0))

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict (only dicts, lists, strings, finite numbers, booleans and None)."""
        return {
            "alert_id": self.alert_id,
            "ts": self.ts,
            "severity": self.severity.value,
            "kind": self.kind,
            "key": self.key,
            "title": self.title,
            "message": self.message,
            "context": to_plain(self.context),
        }

    @classmethod
    def from_json(cls, data: object) -> Alert:
        """The alert `to_json` produced; ValueError naming the field when `data` is not one."""
        if not isinstance(data, Mapping):
            raise ValueError(f"an alert must be a JSON object, got {type(data).__name__}")
        unknown = sorted(str(k) for k in data if k not in _JSON_FIELDS)
        if unknown:
            raise ValueError(f"unknown alert field(s): {', '.join(unknown)}")
        missing = [k for k in _JSON_FIELDS if k not in data and k != "context"]
        if missing:
            raise ValueError(f"missing alert field(s): {', '.join(missing)}")
        return cls(
            alert_id=_str_field(data, "alert_id"),
            ts=_str_field(data, "ts"),
            severity=Severity.parse(data["severity"]),
            kind=_str_field(data, "kind"),
            key=_str_field(data, "key"),
            title=_str_field(data, "title"),
            message=_str_field(data, "message"),
            context=_mapping_field(data, "context"),
        )


_JSON_FIELDS: tuple[str, ...] = (
    "alert_id",
    "ts",
    "severity",
    "kind",
    "key",
    "title",
    "message",
    "context",
)


def _str_field(data: Mapping[object, object], name: str) -> str:
    value = data[name]
    if not isinstance(value, str):
        raise ValueError(f"alert field {name!r} must be a string, got {value!r}")
    return value


def _mapping_field(data: Mapping[object, object], name: str) -> Mapping[str, object]:
    value = data.get(name, {})
    if not isinstance(value, Mapping):
        raise ValueError(f"alert field {name!r} must be an object, got {value!r}")
    return value


def _freeze_mapping(value: Mapping[Any, object], where: str, depth: int) -> Mapping[str, object]:
    frozen: dict[str, object] = {}
    for k, v in value.items():
        if not isinstance(k, str):
            raise ValueError(f"alert {where} keys must be strings, got {k!r}")
        frozen[k] = _freeze(v, f"{where}.{k}", depth + 1)
    return MappingProxyType(frozen)


def _freeze(value: object, where: str, depth: int) -> object:
    if depth > _CONTEXT_MAX_DEPTH:
        raise ValueError(f"alert {where} is nested deeper than {_CONTEXT_MAX_DEPTH} levels")
    if isinstance(value, Enum):
        value = value.value
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else repr(number)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return _freeze_mapping(value, where, depth)
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return tuple(_freeze(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(items))
    return str(value)


def to_plain(value: object) -> object:
    """A frozen context value as plain JSON data: mappings to dicts, tuples to lists."""
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [to_plain(v) for v in value]
    return value
