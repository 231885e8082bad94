"""Reading fact snapshots from JSON, JSONL, CSV or Parquet, with the position of every snapshot.

A facts input is read twice, one snapshot at a time, so memory stays flat however long it is:
`check()` reads it whole and refuses it with every problem (file and line) before anything is
evaluated, so a bad line never leaves half a batch recorded; iterating then yields the checked
snapshots. Standard input is kept in a temporary file to be read twice. One snapshot larger
than `max_snapshot_bytes` is refused: nothing a feed sends is that large, and an unbounded
line would be held in memory whole.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import IO

from engine.factformats import Bad, SourcedSnapshot, read_items, sniff

__all__ = ["DEFAULT_MAX_SNAPSHOT_BYTES", "FORMATS", "FactsError", "FactsInput", "SourcedSnapshot",
           "Visit", "read_snapshots"]

MAX_ERRORS = 20
DEFAULT_MAX_SNAPSHOT_BYTES = 64 * 1024
FORMATS = ("auto", "json", "jsonl", "csv", "parquet")


class FactsError(Exception):
    """The facts input cannot be read; every message names file and line."""

    def __init__(self, messages: list[str]) -> None:
        self.messages = messages
        super().__init__("\n".join(messages))


#: A check of one snapshot beyond its syntax (e.g. time order): a message, or None when fine.
Visit = Callable[[SourcedSnapshot], str | None]


class FactsInput:
    """One facts input (a path, or '-' for standard input), checked whole, then iterated."""

    def __init__(self, path: str, fmt: str = "auto", *,
                 max_snapshot_bytes: int = DEFAULT_MAX_SNAPSHOT_BYTES) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"input format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        if max_snapshot_bytes < 1:
            raise ValueError("the largest snapshot must be at least 1 byte")
        self.name = "<stdin>" if path == "-" else path
        self.max_snapshot_bytes = max_snapshot_bytes
        self.count: int | None = None
        self._file = _open(path, self.name)
        self._checked_state: tuple[int, int, int] | None = None
        try:
            self._file.seek(0)
            head = self._file.read(max(64 * 1024, max_snapshot_bytes + 2))
            self.kind = fmt if fmt != "auto" else sniff(path, head)
        except OSError as e:
            self._file.close()
            raise FactsError([f"{self.name}: cannot read facts: {e.strerror}"]) from e

    def check(self, visit: Visit | None = None) -> int:
        """Read the whole input; raise FactsError with every problem (at most MAX_ERRORS), or
        return the number of snapshots."""
        errors: list[str] = []
        count = 0
        for item in self._items():
            message = item.message if isinstance(item, Bad) else (
                visit(item) if visit is not None else None)
            if message is None:
                count += 1
                continue
            errors.append(f"{item.where}: {message}")
            if len(errors) >= MAX_ERRORS:
                errors.append(f"{self.name}: more errors not shown")
                break
        if errors:
            raise FactsError(errors)
        self.count = count
        self._checked_state = self._state()
        return count

    def __iter__(self) -> Iterator[SourcedSnapshot]:
        """The snapshots, once `check()` has passed; a difference from what was checked (the
        file changed while it was read) stops the iteration with FactsError."""
        if self.count is None:
            raise RuntimeError("check() the facts input before reading it")
        n = 0
        for item in self._items():
            if isinstance(item, Bad) or n == self.count:
                raise self._changed()
            n += 1
            yield item
        # A file cut short or rewritten in place after the check yields fewer or other
        # snapshots without a bad line: its size, time or identity tell.
        if n != self.count or self._state() != self._checked_state:
            raise self._changed()

    def _changed(self) -> FactsError:
        return FactsError([f"{self.name}: the file changed while it was read; run again on a "
                           "file that is complete"])

    def _state(self) -> tuple[int, int, int]:
        st = os.fstat(self._file.fileno())
        return (st.st_size, st.st_mtime_ns, st.st_ino)

    def _items(self) -> Iterator[SourcedSnapshot | Bad]:
        self._file.seek(0)
        return read_items(self.kind, self.name, self._file, self.max_snapshot_bytes)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> FactsInput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open(path: str, name: str) -> IO[bytes]:
    try:
        if path != "-":
            return open(path, "rb")  # closed by FactsInput.close
        spool = tempfile.TemporaryFile()  # noqa: SIM115  (closed by FactsInput.close)
        shutil.copyfileobj(sys.stdin.buffer, spool)
        return spool
    except OSError as e:
        raise FactsError([f"{name}: cannot read facts: {e.strerror}"]) from e


def read_snapshots(path: str, fmt: str = "auto", *,
                   max_snapshot_bytes: int = DEFAULT_MAX_SNAPSHOT_BYTES
                   ) -> list[SourcedSnapshot]:
    """All snapshots of `path` ('-' for standard input) as a list, for inputs known to be
    small (one live cycle). `fmt`: one of FORMATS."""
    with FactsInput(path, fmt, max_snapshot_bytes=max_snapshot_bytes) as source:
        source.check()
        return list(source)
