"""What every command shares: consoles, failing with a message, loading policies."""

from __future__ import annotations

import enum
import sys
from typing import NoReturn

import typer
from rich.console import Console

from engine.policy.loader import load_policy_set
from engine.policy.model import PolicySet
from engine.policy.problems import PolicyError

# Piped output keeps ids whole and tables readable: rich would otherwise assume 80 columns.
_WIDTH = None if sys.stdout.isatty() else 160
out = Console(highlight=False, width=_WIDTH)
err = Console(stderr=True, highlight=False, width=_WIDTH)

EXIT_INVALID = 1
EXIT_USAGE = 2


class Format(enum.StrEnum):
    text = "text"
    json = "json"


def fail(message: str, code: int = EXIT_INVALID) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", markup=True) if sys.stderr.isatty() else \
        print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def print_problems(e: PolicyError) -> None:
    for p in e.problems:
        print(str(p), file=sys.stderr)


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
