"""The book: cash and whole-share positions at a point in time, and loading it from a file."""

from __future__ import annotations

import difflib
import json
import numbers
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from engine import timeutil
from engine.policy.problems import PolicyError
from engine.policy.yamlsource import refuse_deep_nesting, refuse_merge_keys
from engine.portfolio.config import finite_real

#: The name weights use for cash; no position may take it.
CASH = "CASH"

_UTC_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z")
_EXAMPLE_TS = "2024-01-02T15:30:00Z"
_KEYS = ("cash", "positions", "as_of", "last_rebalance")
_REQUIRED = ("cash", "as_of")


def parse_utc(text: object, field: str) -> datetime:
    """`text` as an aware UTC datetime; it must be ISO-8601 ending in `Z`."""
    if not isinstance(text, str) or not _UTC_RE.fullmatch(text):
        raise ValueError(
            f"{field} must be a UTC ISO-8601 time ending in Z, e.g. {_EXAMPLE_TS}, got {show(text)}"
        )
    try:
        return timeutil.parse_utc(text)
    except timeutil.TimestampError as exc:
        raise ValueError(f"{field} is not a valid time: {show(text)} ({exc})") from None


def check_cash(value: object) -> float:
    x = finite_real(value)
    if x is None:
        raise ValueError(f"cash must be a finite number, got {show(value)}")
    if x < 0:
        raise ValueError(f"cash must not be negative, got {show(value)}")
    return x


def check_symbol(symbol: object) -> str:
    if not isinstance(symbol, str) or not symbol.strip():
        raise ValueError(f"a position's symbol must be a non-empty string, got {show(symbol)}")
    if symbol != symbol.strip():
        raise ValueError(f"symbol {symbol!r} has surrounding spaces")
    if symbol == CASH:
        raise ValueError(f"{CASH!r} is reserved for cash and cannot be a position")
    return symbol


def check_shares(symbol: str, value: object) -> int:
    x = finite_real(value)
    if x is None:
        raise ValueError(f"positions.{symbol} must be a whole number of shares, got {show(value)}")
    if not x.is_integer():
        raise ValueError(
            f"positions.{symbol} must be a whole number of shares, got fractional {show(value)}"
        )
    if x < 0:
        raise ValueError(f"positions.{symbol} must not be negative (long only), got {show(value)}")
    # An int stays exact even past 2**53; only whole floats go through float.
    return int(value) if isinstance(value, int) else int(x)


@dataclass(frozen=True)
class Book:
    """Cash and whole-share long positions; times are UTC ISO-8601 strings ending in `Z`.

    Checked when made, so a Book in hand is always valid.
    """

    cash: float
    positions: Mapping[str, int]
    as_of: str
    last_rebalance: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "cash", check_cash(self.cash))
        if not isinstance(self.positions, Mapping):
            raise ValueError(f"positions must be a mapping, got {type(self.positions).__name__}")
        clean = {check_symbol(s): check_shares(s, n) for s, n in self.positions.items()}
        object.__setattr__(self, "positions", MappingProxyType(dict(sorted(clean.items()))))
        as_of = parse_utc(self.as_of, "as_of")
        if self.last_rebalance is not None:
            last = parse_utc(self.last_rebalance, "last_rebalance")
            if last > as_of:
                raise ValueError(
                    f"last_rebalance {self.last_rebalance} is after as_of {self.as_of}"
                )

    def shares(self, symbol: str) -> int:
        return self.positions.get(symbol, 0)


class BookError(ValueError):
    """A book file that cannot be used; the message names the file and, for YAML, line:col."""


def load_book(path: str | Path) -> Book:
    """Read a book from a YAML (`.yaml`, `.yml`) or JSON (`.json`) file.

    Every problem found is reported at once in one BookError, as `FILE:LINE:COL: message`
    where the position is known and `FILE: message` where it is not.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise BookError(f"{p}: unsupported file type {p.suffix!r}; use .yaml, .yml or .json")
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BookError(f"{p}: no such file") from None
    except UnicodeDecodeError:
        raise BookError(f"{p}: not UTF-8 text") from None
    except OSError as exc:
        raise BookError(f"{p}: cannot read: {exc.strerror or exc}") from None
    try:
        refuse_deep_nesting(str(p), text)
        if suffix != ".json":
            refuse_merge_keys(str(p), text)
    except PolicyError as exc:
        raise BookError("\n".join(str(problem) for problem in exc.problems)) from None
    doc, where = _parse_yaml(p, text) if suffix != ".json" else _parse_json(p, text)
    return _book_from(p, doc, where)


# Where a key or value sits in the file: (line, col), 1-based, or None when unknown.
_Where = Callable[[object, object, str], tuple[int, int] | None]


def _parse_yaml(p: Path, text: str) -> tuple[object, _Where]:
    yaml = YAML(typ="rt")
    try:
        doc = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(p)
        problem = exc.problem or exc.context or "invalid YAML"
        raise BookError(f"{loc}: invalid YAML: {problem}") from None
    except YAMLError as exc:
        raise BookError(f"{p}: invalid YAML: {exc}") from None
    return doc, _yaml_where


def _yaml_where(container: object, key: object, part: str) -> tuple[int, int] | None:
    # ruamel keeps 0-based positions of keys and values on round-trip maps.
    if not isinstance(container, CommentedMap):
        return None
    try:
        line, col = container.lc.key(key) if part == "key" else container.lc.value(key)
    except (KeyError, TypeError):
        return None
    return int(line) + 1, int(col) + 1


def _parse_json(p: Path, text: str) -> tuple[object, _Where]:
    def pairs(items: list[tuple[str, object]]) -> dict[str, object]:
        out: dict[str, object] = {}
        for k, v in items:
            if k in out:
                raise ValueError(f"duplicate key {k!r}")
            out[k] = v
        return out

    def constant(name: str) -> object:
        raise ValueError(f"{name} is not a number a book may hold")

    try:
        doc = json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except json.JSONDecodeError as exc:
        raise BookError(f"{p}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    except ValueError as exc:
        raise BookError(f"{p}: invalid JSON: {exc}") from None
    return doc, _nowhere


def _nowhere(container: object, key: object, part: str) -> tuple[int, int] | None:
    return None


def _book_from(p: Path, doc: object, where: _Where) -> Book:
    # Each error with its (line, col); (0, 0) when unknown, so those come first.
    errors: list[tuple[tuple[int, int], str]] = []

    def report(container: object, key: object, part: str, message: str) -> None:
        pos = where(container, key, part)
        loc = f"{p}:{pos[0]}:{pos[1]}" if pos else str(p)
        errors.append((pos or (0, 0), f"{loc}: {message}"))

    if doc is None:
        raise BookError(f"{p}: the file is empty; expected a mapping with {', '.join(_KEYS)}")
    if not isinstance(doc, Mapping) or _tagged(doc):
        raise BookError(f"{p}: expected a mapping with {', '.join(_KEYS)}, got {_kind(doc)}")
    for key in doc:
        if key not in _KEYS:
            near = difflib.get_close_matches(show(key), _KEYS, n=1, cutoff=0.6)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            report(
                doc, key, "key", f"unknown key {show(key)}{hint}; known keys: {', '.join(_KEYS)}"
            )
    for key in _REQUIRED:
        if key not in doc:
            errors.append(((0, 0), f"{p}: missing required key {key!r}"))

    cash: float | None = None
    if "cash" in doc:
        try:
            cash = check_cash(doc["cash"])
        except ValueError as exc:
            report(doc, "cash", "value", str(exc))

    positions: dict[str, int] = {}
    raw_positions = doc.get("positions", {})
    if not isinstance(raw_positions, Mapping) or _tagged(raw_positions):
        report(
            doc,
            "positions",
            "value",
            f"positions must be a mapping of symbol to whole shares (write {{}} for none), "
            f"got {_kind(raw_positions)}",
        )
    else:
        for symbol, shares in raw_positions.items():
            try:
                name = check_symbol(symbol)
            except ValueError as exc:
                hint = " (quote it in YAML)" if not isinstance(symbol, str) else ""
                report(raw_positions, symbol, "key", f"{exc}{hint}")
                continue
            try:
                positions[name] = check_shares(name, shares)
            except ValueError as exc:
                report(raw_positions, symbol, "value", str(exc))

    times: dict[str, str | None] = {}
    for key in ("as_of", "last_rebalance"):
        if key not in doc or (key == "last_rebalance" and doc[key] is None):
            times[key] = None
            continue
        try:
            text = _time_text(doc[key], key)
            parse_utc(text, key)
            times[key] = text
        except ValueError as exc:
            report(doc, key, "value", str(exc))

    as_of, last = times.get("as_of"), times.get("last_rebalance")
    if as_of is not None and last is not None and parse_utc(last, "") > parse_utc(as_of, ""):
        report(doc, "last_rebalance", "value", f"last_rebalance {last} is after as_of {as_of}")

    if errors or cash is None or as_of is None:
        raise BookError("\n".join(message for _, message in sorted(errors)))
    return Book(cash=cash, positions=positions, as_of=as_of, last_rebalance=last)


def _time_text(value: object, field: str) -> str:
    # Unquoted YAML times arrive as datetimes; only an explicit `Z` counts as UTC.
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() != timedelta(0) or value.tzname() != "Z":
            raise ValueError(
                f"{field} must be a UTC time ending in Z, e.g. {_EXAMPLE_TS}, got {value!s}"
            )
        frac = f".{value.microsecond:06d}" if value.microsecond else ""
        return value.strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z"
    if isinstance(value, date):
        raise ValueError(
            f"{field} must be a UTC time ending in Z, e.g. {_EXAMPLE_TS}, got the date {value}"
        )
    if not isinstance(value, str):
        raise ValueError(
            f"{field} must be a UTC ISO-8601 time ending in Z, e.g. {_EXAMPLE_TS}, "
            f"got {show(value)}"
        )
    return value


def _tagged(node: object) -> bool:
    # A YAML tag is an instruction, not data: refuse it.
    tag = getattr(node, "tag", None)
    return tag is not None and getattr(tag, "value", None) is not None


def _kind(value: object) -> str:
    if value is None:
        return "nothing (null)"
    return show(value) if _tagged(value) else f"{type(value).__name__} {show(value)}"


def show(value: object) -> str:
    """A short rendering of `value` for an error message.

    A container is named, never printed: a YAML alias bomb would explode in `repr`.
    """
    if _tagged(value):
        return f"a value tagged {value.tag.value}"  # type: ignore[attr-defined]
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple | set | frozenset):
        return "a list"
    if not isinstance(value, str | date | numbers.Real | None):
        return f"a {type(value).__name__}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
