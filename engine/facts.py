"""Facts: checking every value a rule reads before it can reach the rule engine.

A fact that is missing, null, NaN, infinite, of the wrong type, outside its catalogue range,
dated after the snapshot or older than the policy allows is a Finding, and the caller fails
closed on it. Nothing here guesses a value.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from engine.canonical import Encoded
from engine.catalogue import CATALOGUE, FactSpec
from engine.policy.model import Scalar
from engine.timeutil import TimestampError, format_utc, parse_utc

Problem = Literal["missing", "invalid", "stale"]

#: Integers at or beyond 2**53 are not exactly representable as a float, nor by the engine.
MAX_EXACT_INT = 2**53


class Duplicated(list[Any]):
    """Every value a JSON object gave one key, in order: `{"a": 1, "a": 2}` reads as
    `{"a": Duplicated([1, 2])}`. Which one was meant is a guess, so a fact, `ts` or `symbol`
    holding one is invalid; it is still plain JSON (a list) for the record of the input."""


@dataclass(frozen=True)
class Finding:
    fact: str
    problem: Problem
    detail: str

    @property
    def rule_name(self) -> str:
        """The name a decision gives the fail-closed rule, e.g. `fact-missing:drift_score`."""
        return f"fact-{self.problem}:{self.fact}"


@dataclass(frozen=True)
class Snapshot:
    """A snapshot's envelope, checked; the fact values stay raw until a rule asks for them."""

    raw: Mapping[str, Any]
    ts: datetime | None
    ts_text: str | None
    symbol: str | None
    findings: tuple[Finding, ...]

    @property
    def facts_hash(self) -> str:
        return facts_hash(self.raw)


def facts_hash(raw: Mapping[str, Any], encoded: Encoded | None = None) -> str:
    """SHA-256 of the facts' JSON, keys sorted, ASCII, a value JSON cannot write as its str.
    `encoded`: the facts' canonical text, when made already; an ASCII one is that very text,
    so it is hashed instead of encoding the facts again."""
    # An ASCII canonical text is what the ASCII encoding writes too, but for DEL, which only
    # the ASCII encoding escapes.
    if encoded is not None and encoded.text.isascii() and "\x7f" not in encoded.text:
        return hashlib.sha256(encoded.text.encode("utf-8")).hexdigest()
    text = json.dumps(raw, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse_snapshot(raw: object) -> Snapshot:
    """Check the envelope (`ts`, `symbol`) of one snapshot."""
    if not isinstance(raw, Mapping):
        return Snapshot({"value": raw}, None, None, None,
                        (Finding("snapshot", "invalid",
                                 f"a snapshot is a JSON object, not {_kind(raw)}"),))
    findings: list[Finding] = []
    ts: datetime | None = None
    ts_text = raw.get("ts")
    if isinstance(ts_text, Duplicated):
        findings.append(Finding("ts", "invalid", _duplicated("ts", ts_text)))
    elif ts_text is None:
        findings.append(Finding("ts", "missing", "the snapshot has no ts"))
    else:
        try:
            ts = parse_utc(ts_text)
        except TimestampError as e:
            findings.append(Finding("ts", "invalid", str(e)))
    symbol = raw.get("symbol")
    if isinstance(symbol, Duplicated):
        findings.append(Finding("symbol", "invalid", _duplicated("symbol", symbol)))
        symbol = None
    elif symbol is None:
        findings.append(Finding("symbol", "missing", "the snapshot has no symbol"))
    elif not isinstance(symbol, str) or not symbol.strip():
        findings.append(Finding("symbol", "invalid", f"symbol must be a non-empty string, "
                                                     f"got {_show(symbol)}"))
        symbol = None
    return Snapshot(raw, ts, ts_text if isinstance(ts_text, str) else None,
                    symbol if isinstance(symbol, str) else None, tuple(findings))


def clock_findings(snapshot: Snapshot, now: datetime, max_age: timedelta | None,
                   max_skew: timedelta) -> list[Finding]:
    """On the wall clock: a snapshot dated ahead of `now` by more than `max_skew` cannot be
    true, and one older than `max_age` against `now` is stale, whatever its facts say."""
    if snapshot.ts is None:
        return []  # the envelope finding already names the unusable ts
    if snapshot.ts - now > max_skew:
        return [Finding("ts", "invalid", f"ts {snapshot.ts_text} is {_age(snapshot.ts - now)} "
                                         f"ahead of the clock ({format_utc(now)}); the policy "
                                         f"allows {_age(max_skew)} of clock skew")]
    if max_age is not None and now - snapshot.ts > max_age:
        return [Finding("ts", "stale", f"the snapshot (ts {snapshot.ts_text}) is "
                                       f"{_age(now - snapshot.ts)} old at {format_utc(now)}; "
                                       f"the policy allows {_age(max_age)}")]
    return []


def read_fact(snapshot: Snapshot, name: str, max_age: timedelta | None,
              now: datetime | None = None) -> tuple[Scalar | None, Finding | None]:
    """The checked value of fact `name`, or the finding that stops it being used. A dated
    fact's age is measured against `now` (the wall clock's), or against the snapshot's own
    `ts` when `now` is None (the snapshot clock)."""
    spec = CATALOGUE.get(name)
    if spec is None:  # policies are validated against the catalogue; this is a bug guard
        return None, Finding(name, "invalid", "not a fact of the catalogue")
    if name not in snapshot.raw:
        return None, Finding(name, "missing", f"the snapshot has no {name}")
    entry = snapshot.raw[name]
    as_of: datetime | None = None
    if isinstance(entry, Duplicated):
        return None, Finding(name, "invalid", _duplicated(name, entry))
    if isinstance(entry, Mapping):
        for key in ("value", "as_of"):
            if isinstance(entry.get(key), Duplicated):
                return None, Finding(name, "invalid",
                                     _duplicated(f"{name}.{key}", entry[key]))
        extra = set(entry) - {"value", "as_of"}
        if extra:
            return None, Finding(name, "invalid", f"unexpected key(s) {sorted(extra)}; "
                                                  "a dated fact is {value, as_of}")
        if "value" not in entry:
            return None, Finding(name, "missing", f"{name} has no value")
        if "as_of" in entry:
            try:
                as_of = parse_utc(entry["as_of"])
            except TimestampError as e:
                return None, Finding(name, "invalid", f"as_of: {e}")
        entry = entry["value"]
    if entry is None:
        return None, Finding(name, "missing", f"{name} is null")
    problem = type_problem(spec, entry)
    if problem:
        return None, Finding(name, "invalid", problem)
    if as_of is not None:
        if snapshot.ts is None:
            return None, Finding(name, "invalid", "cannot check freshness: the snapshot's ts "
                                                  "is unusable")
        if as_of > snapshot.ts:
            return None, Finding(name, "invalid", f"as_of {entry_as_of(snapshot, name)} is "
                                                  f"after the snapshot's ts {snapshot.ts_text}")
        reference = snapshot.ts if now is None else now
        if max_age is not None and reference - as_of > max_age:
            age = reference - as_of
            return None, Finding(name, "stale", f"{name} is {_age(age)} old; the policy allows "
                                                f"{_age(max_age)}")
    return _normalise(spec, entry), None


def entry_as_of(snapshot: Snapshot, name: str) -> str:
    entry = snapshot.raw.get(name)
    return str(entry.get("as_of")) if isinstance(entry, Mapping) else ""


def quick_check(spec: FactSpec) -> Callable[[object], bool]:
    """A cheap test for the plain cases of `spec`: a float or an int inside the range of a
    number, an int inside the range of a count, a bool, a string of the allowed ones. It accepts
    only values `type_problem` accepts; a value it does not accept takes the full check, which
    says why (an evaluation reads every order's facts, so the common case must cost little)."""
    if spec.type == "boolean":
        return lambda v: type(v) is bool
    if spec.type == "string":
        choices = frozenset(spec.choices)
        return lambda v: type(v) is str and (not choices or v in choices)
    exact = float(MAX_EXACT_INT - 1)
    lo = -exact if spec.minimum is None else max(-exact, spec.minimum)
    hi = exact if spec.maximum is None else min(exact, spec.maximum)
    if spec.type == "integer":  # a float must be whole: the full check says so
        return lambda v: type(v) is int and lo <= v <= hi
    # NaN fails both comparisons and the bounds are finite, so infinities fail too.
    return lambda v: (type(v) is float or type(v) is int) and lo <= v <= hi


def type_problem(spec: FactSpec, value: object) -> str:
    """Why `value` cannot be fact `spec`, or an empty string when it can."""
    if spec.type in ("number", "integer"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{spec.name} must be a number ({spec.unit}), got {_kind(value)} {_show(value)}"
        if isinstance(value, int) and abs(value) >= MAX_EXACT_INT:
            return f"{spec.name} = {_show(value)} is too large to be a {spec.unit}"
        if not math.isfinite(value):
            return f"{spec.name} is {_show(value)}, not a finite number"
        # A whole number this large written as a float is no longer an exact count.
        if spec.type == "integer" and abs(value) >= MAX_EXACT_INT:
            return f"{spec.name} = {_show(value)} is too large to be a count of {spec.unit}"
        if spec.type == "integer" and not float(value).is_integer():
            return f"{spec.name} must be a whole number of {spec.unit}, got {_show(value)}"
        if not spec.in_range(float(value)):
            return (f"{spec.name} = {_show(value)} is outside its range {spec.range_text()} "
                    f"({spec.unit})")
        return ""
    if spec.type == "boolean":
        return "" if isinstance(value, bool) else (
            f"{spec.name} must be true or false, got {_kind(value)} {_show(value)}")
    if not isinstance(value, str):
        return f"{spec.name} must be a string, got {_kind(value)} {_show(value)}"
    if spec.choices and value not in spec.choices:
        return f"{spec.name} = {value!r} is not one of {', '.join(spec.choices)}"
    return ""


def _normalise(spec: FactSpec, value: Any) -> Scalar:
    if spec.type == "integer":
        return int(value)
    if spec.type == "number":
        return float(value) if isinstance(value, float) else int(value)
    return value  # type: ignore[no-any-return]


def _duplicated(name: str, values: Duplicated) -> str:
    shown = ", ".join(_show(v) for v in values)
    return (f"{name} is given {len(values)} times ({shown}); which one holds would be a "
            "guess")


def _age(delta: timedelta) -> str:
    exact = delta.total_seconds()
    seconds = int(exact)
    if seconds != exact:
        # Next to a limit of whole seconds, a fraction matters: 5.5s ahead is past 5s.
        return f"{exact:.3f}".rstrip("0").rstrip(".") + "s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _show(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= MAX_EXACT_INT:
        digits = len(str(abs(value)))
        return f"an integer of {digits} digits"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, str):
        return repr(value)
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
