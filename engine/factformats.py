"""The forms of a facts file, each read one snapshot at a time from a binary stream: JSON,
JSONL and CSV here, Parquet in engine.parquetfacts.

JSONL lines end at "\\n" only: U+2028 and other Unicode line separators are characters of
the line (Python's `str.splitlines` would split there). A JSON array is read element by
element. A CSV cell is a number only when written with ASCII digits, as JSON writes them.
Every reader yields a `Bad` for what it cannot read, positioned at its file and line, and
never holds more than one snapshot (at most `cap` bytes) in memory.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from engine.catalogue import CATALOGUE
from engine.strictjson import JsonRefused, loads, raw_decode

_CHUNK = 64 * 1024
_WS = " \t\r\n"
_WS_RUN = re.compile(r"[ \t\r\n]*")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NON_FINITE = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity",
               "-infinity"}
_DEEP = "JSON nested too deeply to be a snapshot"


@dataclass(frozen=True)
class SourcedSnapshot:
    where: str  # FILE:LINE
    data: Any
    size: int = 0  # bytes of input it was read from


@dataclass(frozen=True)
class Bad:
    where: str  # FILE:LINE[:COL]
    message: str


Item = SourcedSnapshot | Bad


def too_large(cap: int) -> str:
    return (f"snapshot larger than {_kib(cap)}, the largest read "
            "(--max-snapshot-bytes sets the limit)")


def _kib(n: int) -> str:
    return f"{n // 1024} KiB" if n % 1024 == 0 else f"{n} bytes"


def sniff(path: str, head: bytes) -> str:
    """The form of a facts file from its name, else from its first bytes."""
    lower = path.lower()
    if lower.endswith(".parquet") or head.startswith(b"PAR1"):
        return "parquet"
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith(".jsonl") or lower.endswith(".ndjson"):
        return "jsonl"
    text = head.decode("utf-8", errors="replace").lstrip(_WS)
    if text.startswith("["):
        return "json"
    if text.startswith("{"):
        # one object per line is JSONL; one object spread over lines is JSON
        try:
            json.loads(text.split("\n", 1)[0])
            return "jsonl"
        except (ValueError, RecursionError):
            return "json"
    if lower.endswith(".json"):
        return "json"
    return "csv" if "," in text.split("\n", 1)[0] else "jsonl"


def read_items(kind: str, name: str, f: IO[bytes], cap: int) -> Iterator[Item]:
    if kind == "csv":
        return _csv(name, f, cap)
    if kind == "parquet":
        from engine.parquetfacts import read_parquet

        return read_parquet(name, f, cap)
    if kind == "json":
        return _JsonDocument(name, f, cap).items()
    return _jsonl(name, f, cap)


def _lines(f: IO[bytes], cap: int) -> Iterator[tuple[int, bytes | None]]:
    """Numbered lines split at b"\\n" only, without their line ending; None for a line longer
    than `cap`, which is skipped without being held."""
    n = 0
    while True:
        raw = f.readline(cap + 3)
        if not raw:
            return
        n += 1
        if not raw.endswith(b"\n") and len(raw) == cap + 3:
            while (rest := f.readline(_CHUNK)) and not rest.endswith(b"\n"):
                pass
            yield n, None
            continue
        body = raw[:-1] if raw.endswith(b"\n") else raw
        body = body[:-1] if body.endswith(b"\r") else body
        yield n, (None if len(body) > cap else body)


def _decode_line(where: str, raw: bytes) -> str | Bad:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return Bad(f"{where}:{e.start + 1}", "not valid UTF-8 text")


def _jsonl(name: str, f: IO[bytes], cap: int) -> Iterator[Item]:
    for n, raw in _lines(f, cap):
        where = f"{name}:{n}"
        if raw is None:
            yield Bad(where, too_large(cap))
            continue
        text = _decode_line(where, raw)
        if isinstance(text, Bad):
            yield text
            continue
        if not text.strip(_WS):
            continue
        try:
            yield SourcedSnapshot(where, loads(text), len(raw))
        except json.JSONDecodeError as e:
            yield Bad(f"{where}:{e.colno}", f"invalid JSON: {e.msg}")
        except JsonRefused as e:
            yield Bad(where, str(e))
        except RecursionError:
            yield Bad(where, _DEEP)


class _JsonDocument:
    """A JSON document: one snapshot, or an array read element by element through a window
    of the text that never holds more than one element (at most `cap` bytes) beyond a
    chunk."""

    def __init__(self, name: str, f: IO[bytes], cap: int) -> None:
        import codecs
        self.name, self.f, self.cap = name, f, cap
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.buf = ""
        self.pos = 0
        self.line = 1  # the line of buf[pos]
        self.line_start = 0  # where that line starts in buf (below 0 once cut off)
        self.eof = False

    def items(self) -> Iterator[Item]:
        try:
            yield from self._items()
        except _Stop as stop:
            yield stop.bad

    def _items(self) -> Iterator[Item]:
        if self._peek() != "[":
            where = f"{self.name}:{self.line}"
            yield SourcedSnapshot(where, *self._value())
            self._end()
            return
        self._advance(1)
        if self._peek() == "]":
            self._advance(1)
            self._end()
            return
        i = 0
        while True:
            self._peek()
            where = f"{self.name}:[{i}]"
            yield SourcedSnapshot(where, *self._value())
            i += 1
            ch = self._peek()
            if ch == "]":
                self._advance(1)
                self._end()
                return
            if ch != ",":
                self._fail("invalid JSON: expecting ',' or ']' after an element")
            self._advance(1)

    def _more(self) -> bool:
        """Read the next chunk (at least as much as the window holds, so that a value read
        again from its start costs linear time); False at the end of the input."""
        if self.eof:
            return False
        try:
            data = self.f.read(max(_CHUNK, len(self.buf) - self.pos))
            text = self.decoder.decode(data, final=not data)
        except UnicodeDecodeError:
            self._fail("not valid UTF-8 text")
        if not data:
            self.eof = True
            return False
        self.buf = self.buf[self.pos:] + text
        self.line_start -= self.pos
        self.pos = 0
        return True

    def _advance(self, n: int) -> None:
        newline = self.buf.rfind("\n", self.pos, self.pos + n)
        if newline >= 0:
            self.line += self.buf.count("\n", self.pos, self.pos + n)
            self.line_start = newline + 1
        self.pos += n

    def _peek(self) -> str:
        """The next character that is not white space, or "" at the end."""
        while True:
            run = _WS_RUN.match(self.buf, self.pos)
            assert run is not None  # matches the empty string
            self._advance(run.end() - self.pos)
            if self.pos < len(self.buf) or not self._more():
                return self.buf[self.pos:self.pos + 1]

    def _value(self) -> tuple[Any, int]:
        while True:
            try:
                value, end = raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                if _cut_short(e):
                    if len(self.buf) - self.pos > self.cap:
                        self._fail(too_large(self.cap))
                    if self._more():
                        continue
                self._advance(e.pos - self.pos)
                col = e.pos - self.line_start + 1
                raise _Stop(Bad(f"{self.name}:{self.line}:{col}",
                                f"invalid JSON: {e.msg}")) from e
            except JsonRefused as e:
                self._fail(str(e))
            except RecursionError:
                self._fail(_DEEP)
            if end == len(self.buf) and self._more():
                continue  # a number at the end of the window may go on
            size = len(self.buf[self.pos:end].encode("utf-8"))
            if size > self.cap:
                self._fail(too_large(self.cap))
            self._advance(end - self.pos)
            return value, size

    def _end(self) -> None:
        if self._peek():
            self._fail("invalid JSON: extra data after the document")

    def _fail(self, message: str) -> Any:
        raise _Stop(Bad(f"{self.name}:{self.line}", message))


def _cut_short(e: json.JSONDecodeError) -> bool:
    """Whether the error may only mean that the window ends inside the value: an error
    further back is in the text itself."""
    return e.pos >= len(e.doc) - 8 or e.msg.startswith("Unterminated string")


class _Stop(Exception):
    def __init__(self, bad: Bad) -> None:
        self.bad = bad


class _CsvLines:
    """Lines for csv.reader, decoded; refuses a line that is not UTF-8 and a record (which
    may span lines inside quotes) larger than `cap`."""

    def __init__(self, name: str, f: IO[bytes], cap: int) -> None:
        self.name, self.cap = name, cap
        self.lines = _lines(f, cap)
        self.record_bytes = 0

    def __iter__(self) -> Iterator[str]:
        for n, raw in self.lines:
            where = f"{self.name}:{n}"
            if raw is None or self.record_bytes + len(raw) > self.cap:
                raise _Stop(Bad(where, too_large(self.cap)))
            self.record_bytes += len(raw) + 1
            text = _decode_line(where, raw)
            if isinstance(text, Bad):
                raise _Stop(text)
            yield text + "\n"


def _csv(name: str, f: IO[bytes], cap: int) -> Iterator[Item]:
    if csv.field_size_limit() < cap:
        csv.field_size_limit(cap)  # our own limit on a record is the one that applies
    lines = _CsvLines(name, f, cap)
    reader = csv.reader(iter(lines))
    try:
        yield from _csv_rows(name, reader, lines)
    except _Stop as stop:
        yield stop.bad
    except csv.Error as e:
        yield Bad(f"{name}:{reader.line_num}", f"invalid CSV: {e}")


def _csv_rows(name: str, reader: Any, lines: _CsvLines) -> Iterator[Item]:
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return
    lines.record_bytes = 0
    problem = header_problem(header, "a CSV")
    if problem:
        yield Bad(f"{name}:1", problem)
        return
    for row in reader:
        size, lines.record_bytes = lines.record_bytes, 0
        where = f"{name}:{reader.line_num}"
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            yield Bad(where, f"{len(row)} cells for {len(header)} columns")
            continue
        snap: dict[str, Any] = {}
        for col, cell in zip(header, row, strict=True):
            cell = cell.strip()
            if cell == "":
                continue  # an empty cell is a missing fact, never a zero
            snap[col] = cell if col in ("ts", "symbol") else _cell(col, cell)
        yield SourcedSnapshot(where, snap, size)


def header_problem(header: list[str], form: str) -> str | None:
    """What makes the columns of a table of facts (`form`: "a CSV", ...) unreadable."""
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        return (f"column(s) {', '.join(repeated)} appear more than once; which one holds the "
                "fact would be a guess")
    if "ts" not in header or "symbol" not in header:
        return f"{form} of facts needs 'ts' and 'symbol' columns (found: {', '.join(header)})"
    return None


def _cell(column: str, cell: str) -> Any:
    spec = CATALOGUE.get(column)
    kind = spec.type if spec else "auto"
    if kind == "boolean":
        low = cell.lower()
        return {"true": True, "false": False}.get(low, cell)
    if kind == "string":
        return cell
    if _NUMBER.fullmatch(cell) or cell.lower() in _NON_FINITE:
        value = float(cell)
    else:
        return cell  # the fact check reports a string where a number belongs
    if kind == "integer" and math.isfinite(value) and value.is_integer():
        return int(value)
    return value
