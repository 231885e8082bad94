"""Help that reads well: every option explained, no <bool> after a flag, lines and piped
tables as wide as COLUMNS asks."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import Any

import typer

from cli.main import app
from tests.conftest import RunCli


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...],
                                                                          Any]]:
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        yield path, command
        return
    for name, sub in subcommands.items():
        yield from _commands(sub, (*path, name))


def test_every_option_of_every_command_is_explained() -> None:
    unexplained = [(" ".join(path), p.opts) for path, c in _commands(typer.main.get_command(app))
                   for p in c.params
                   if p.param_type_name == "option" and not (p.help or "").strip()]
    assert unexplained == []


def test_every_option_that_takes_a_value_names_it_and_every_required_one_says_so() -> None:
    """An option's value is named for what it is (N, DIR, TEXT), never a bare type such as
    <int range>; what must be given (a reason, for one) is marked required."""
    commands = dict(_commands(typer.main.get_command(app)))
    unnamed = [(" ".join(path), p.opts) for path, c in commands.items() for p in c.params
               if p.param_type_name == "option" and not p.is_flag and not p.metavar
               and not isinstance(p.type_descriptor.annotation, enum.EnumMeta)]
    assert unnamed == []
    reasons = {path: next(p for p in c.params if p.name == "reason")
               for path, c in commands.items() if any(p.name == "reason" for p in c.params)}
    assert set(reasons) >= {("kill",), ("resume",), ("activate",), ("approvals", "approve"),
                            ("approvals", "reject")}
    assert [path for path, p in reasons.items() if not p.required] == []


def test_flags_show_no_value_placeholder_and_help_wraps_at_columns(invoke_cli: RunCli,
                                                                    run_cli: RunCli) -> None:
    commands = [path for path, _ in _commands(typer.main.get_command(app))]
    assert ("audit", "list") in commands and ("fmt",) in commands
    for path in [(), *commands]:
        proc = invoke_cli(*path, "--help", env={"COLUMNS": "80"})
        assert proc.returncode == 0, path
        assert "<bool>" not in proc.stdout, path
        assert max(len(line) for line in proc.stdout.splitlines()) <= 80, path
    narrow = run_cli("facts", env={"COLUMNS": "72"})
    assert narrow.returncode == 0
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 72
    assert "drift_score" in narrow.stdout
