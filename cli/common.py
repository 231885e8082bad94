"""What every command shares: consoles, failing with a message, loading policies."""

from __future__ import annotations

import enum
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from cli.plain import PlainConsole, styled, write_lines
from engine.audit import prefix
from engine.audit.store import AuditStore
from engine.catalogue import unknown_key_message, unknown_keys
from engine.clock import Clock, named
from engine.factsource import (
    DEFAULT_MAX_SNAPSHOT_BYTES,
    FORMATS,
    FactsError,
    FactsInput,
    SourcedSnapshot,
    Visit,
)
from engine.names import unknown_name
from engine.policy.loader import load_policy_set
from engine.policy.model import PolicySet
from engine.policy.problems import PolicyError
from engine.timeutil import TimestampError, parse_day

# Piped output keeps ids whole and tables readable: rich would otherwise assume 80 columns.
# COLUMNS, when set, is the width asked for, piped or not.
_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
if TYPE_CHECKING:
    from engine.portfolio.book import Book

out = PlainConsole(width=_WIDTH)
err = PlainConsole(stderr=True, width=_WIDTH)

EXIT_INVALID = 1
EXIT_USAGE = 2


class Format(enum.StrEnum):
    text = "text"
    json = "json"


FormatOpt = Annotated[Format, typer.Option("--format", help="text for people, json for "
                                                            "programs (one object per line).")]
PoliciesOpt = Annotated[str, typer.Option("--policies", "-p", metavar="DIR",
                                          help="Directory (or file) of policy YAML files.")]


class ClockName(enum.StrEnum):
    wall = "wall"
    snapshot = "snapshot"


ClockOpt = Annotated[ClockName, typer.Option(
    "--clock", help="wall: facts are aged against this machine's time and a snapshot dated "
                    "in the future is invalid (live use); snapshot: against each snapshot's "
                    "own ts (replaying history).")]


def clock_of(name: ClockName) -> Clock:
    return named(name.value)


def resolve_ref(store: AuditStore, text: str, *, kind: str | None = None,
                what: str = "id") -> str:
    """The whole ref that `text` (a whole ref or a unique start of one) names; an ambiguous
    start exits 2 listing the candidates. A text that names nothing is returned as it is."""
    try:
        return prefix.resolve(store, text, kind=kind, what=what)
    except prefix.AmbiguousRef as e:
        fail(str(e), EXIT_USAGE)


def fail(message: str, code: int = EXIT_INVALID) -> NoReturn:
    first, *rest = message.split("\n")
    if sys.stderr.isatty():
        err.print(styled(("error:", "red"), " ", first))
    else:
        write_lines(f"error: {first}", sys.stderr)
    if rest:
        write_lines("\n".join(rest), sys.stderr)
    raise typer.Exit(code)


def refuse_unknown(option: str, values: Iterable[str], known: Iterable[str],
                   what: str) -> None:
    """Exit 2 when any of `values` (given with `option`) is not among `known`, naming the
    nearest known names: a misspelt name must not be taken for one that matches nothing."""
    choices = set(known)
    wrong = [v for v in values if v not in choices]
    if wrong:
        fail(f"{option}: " + "; ".join(unknown_name(what, v, choices) for v in wrong),
             EXIT_USAGE)


def _day(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return parse_day(value).isoformat()
    except TimestampError as e:
        raise typer.BadParameter(str(e)) from e


def day_option(flag: str, help: str) -> Any:
    """A --from/--to style option taking one calendar day (YYYY-MM-DD); anything else is a
    usage error (exit 2), never an empty or unbounded range."""
    return typer.Option(flag, metavar="YYYY-MM-DD", help=help, callback=_day,
                        show_default=False)


def check_day_range(start: str | None, end: str | None) -> None:
    """Exit 2 when --from falls after --to: such a range selects nothing."""
    if start is not None and end is not None and start > end:
        fail(f"--from {start} is after --to {end}: the range holds no day", EXIT_USAGE)


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


class _UnknownKeys:
    """Where each key that is not a fact first appears, and how often: a warning for each
    once the input is checked, not one per line."""

    def __init__(self, then: Visit | None) -> None:
        self.then = then
        self.seen: dict[str, tuple[str, int]] = {}

    def __call__(self, s: SourcedSnapshot) -> str | None:
        for key in unknown_keys(s.data):
            where, n = self.seen.get(key, (s.where, 0))
            self.seen[key] = (where, n + 1)
        return self.then(s) if self.then is not None else None

    def warn(self) -> None:
        for key, (where, n) in self.seen.items():
            more = f" (and {n - 1} more snapshot(s))" if n > 1 else ""
            write_lines(f"warning: {where}: {unknown_key_message(key)}{more}", sys.stderr)


def open_facts(facts: str, input_format: str = "auto", *,
               max_snapshot_bytes: int = DEFAULT_MAX_SNAPSHOT_BYTES,
               visit: Visit | None = None) -> CheckedFacts:
    """A facts input checked whole, then read one snapshot at a time; exit 1 naming every
    unreadable line (a file that cannot be read as a whole is not evaluated at all), or when
    it holds no snapshot. A key that is not a fact is a warning naming the nearest facts."""
    if input_format not in FORMATS:
        fail(f"--input-format must be one of {', '.join(FORMATS)}, not {input_format!r}",
             EXIT_USAGE)
    try:
        source = FactsInput(facts, input_format, max_snapshot_bytes=max_snapshot_bytes)
    except FactsError as e:
        _refuse(e, "nothing was evaluated")
    unknown = _UnknownKeys(visit)
    try:
        count = source.check(unknown)
    except FactsError as e:
        source.close()
        _refuse(e, "nothing was evaluated")
    unknown.warn()
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
    if os.path.isdir(path):
        fail(f"{path}: is a directory; give a book file (YAML or JSON with cash and "
             "positions), e.g. examples/portfolio.yaml")
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
