"""What every command shares: consoles, failing with a message, loading policies."""

from __future__ import annotations

import enum
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from cli.plain import PlainConsole, styled, write_lines
from engine.clock import Clock, named
from engine.factsource import (
    DEFAULT_MAX_SNAPSHOT_BYTES,
    FORMATS,
    FactsError,
    FactsInput,
    SourcedSnapshot,
    Visit,
)
from engine.policy.loader import load_policy_set
from engine.policy.model import PolicySet
from engine.policy.problems import PolicyError

# Piped output keeps ids whole and tables readable: rich would otherwise assume 80 columns.
_WIDTH = None if sys.stdout.isatty() else 160
if TYPE_CHECKING:
    from engine.portfolio.book import Book

out = PlainConsole(width=_WIDTH)
err = PlainConsole(stderr=True, width=_WIDTH)

EXIT_INVALID = 1
EXIT_USAGE = 2


class Format(enum.StrEnum):
    text = "text"
    json = "json"


class ClockName(enum.StrEnum):
    wall = "wall"
    snapshot = "snapshot"


ClockOpt = Annotated[ClockName, typer.Option(
    "--clock", help="wall: facts are aged against this machine's time and a snapshot dated "
                    "in the future is invalid (live use); snapshot: against each snapshot's "
                    "own ts (replaying history).")]


def clock_of(name: ClockName) -> Clock:
    return named(name.value)


def fail(message: str, code: int = EXIT_INVALID) -> NoReturn:
    first, *rest = message.split("\n")
    if sys.stderr.isatty():
        err.print(styled(("error:", "red"), " ", first))
    else:
        write_lines(f"error: {first}", sys.stderr)
    if rest:
        write_lines("\n".join(rest), sys.stderr)
    raise typer.Exit(code)


def print_problems(e: PolicyError) -> None:
    for p in e.problems:
        write_lines(p, sys.stderr)


MaxSnapshotOpt = Annotated[int, typer.Option(
    "--max-snapshot-bytes", min=1, metavar="BYTES",
    help="The largest snapshot read (one line, CSV record or array element); a larger one "
         "refuses the input.")]


@dataclass(frozen=True)
class CheckedFacts:
    count: int
    snapshots: Iterator[SourcedSnapshot]

    def __iter__(self) -> Iterator[SourcedSnapshot]:
        return self.snapshots


def open_facts(facts: str, input_format: str = "auto", *,
               max_snapshot_bytes: int = DEFAULT_MAX_SNAPSHOT_BYTES,
               visit: Visit | None = None) -> CheckedFacts:
    """A facts input checked whole, then read one snapshot at a time; exit 1 naming every
    unreadable line (a file that cannot be read as a whole is not evaluated at all), or when
    it holds no snapshot."""
    if input_format not in FORMATS:
        fail(f"--input-format must be auto, json, jsonl or csv, not {input_format!r}",
             EXIT_USAGE)
    try:
        source = FactsInput(facts, input_format, max_snapshot_bytes=max_snapshot_bytes)
    except FactsError as e:
        _refuse(e, "nothing was evaluated")
    try:
        count = source.check(visit)
    except FactsError as e:
        source.close()
        _refuse(e, "nothing was evaluated")
    if not count:
        source.close()
        # An empty input is most often a dead upstream feed: deciding nothing is not a success.
        fail(f"{'stdin' if facts == '-' else facts}: no snapshot: the facts input is empty "
             "(is the upstream feed down?); nothing was evaluated")
    return CheckedFacts(count, _stream(source))


def _stream(source: FactsInput) -> Iterator[SourcedSnapshot]:
    with source:
        try:
            yield from source
        except FactsError as e:
            _refuse(e, "snapshots before this point were evaluated")


def _refuse(e: FactsError, consequence: str) -> NoReturn:
    for m in e.messages:
        write_lines(m, sys.stderr)
    print(consequence, file=sys.stderr)
    raise typer.Exit(EXIT_INVALID) from e


def read_sourced(facts: str, input_format: str = "auto", *,
                 max_snapshot_bytes: int = DEFAULT_MAX_SNAPSHOT_BYTES) -> list[SourcedSnapshot]:
    """Every snapshot of a small facts input (one live cycle) with where it came from, or
    exit 1 as `open_facts` does."""
    return list(open_facts(facts, input_format, max_snapshot_bytes=max_snapshot_bytes))


def load_snapshots(facts: str, *, input_format: str = "auto",
                   max_snapshot_bytes: int = DEFAULT_MAX_SNAPSHOT_BYTES) -> list[Any]:
    """The snapshots of a small facts input; at least one, or exit 1."""
    return [s.data for s in read_sourced(facts, input_format,
                                         max_snapshot_bytes=max_snapshot_bytes)]


def load_book_file(path: str) -> Book:
    """The book of a portfolio file, or exit 1 with every problem at its position."""
    from engine.portfolio.book import BookError, load_book
    try:
        return load_book(path)
    except BookError as e:
        fail(str(e))


def load_policies(paths: list[str]) -> PolicySet:
    """Load a policy set or exit 1 listing every problem as FILE:LINE:COL: message."""
    try:
        return load_policy_set(paths)
    except PolicyError as e:
        print_problems(e)
        n = len(e.problems)
        print(f"{n} problem{'s' if n != 1 else ''} found; the policy set was not applied",
              file=sys.stderr)
        raise typer.Exit(EXIT_INVALID) from e
