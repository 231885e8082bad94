"""fugger fmt: policies in one canonical layout, comments kept."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cli.common import EXIT_INVALID, fail, out, print_problems
from cli.plain import write_lines
from engine.policy.fmt import FormatError, Formatted, format_file, write_atomically
from engine.policy.loader import discover, load_policy_set
from engine.policy.problems import PolicyError


def fmt(
    paths: Annotated[list[str] | None, typer.Argument(
        metavar="PATH...", help="Policy files or directories (default policies).",
        show_default=False)] = None,
    check: Annotated[bool, typer.Option(
        "--check", help="Change nothing; list the files that would change and exit 1 if "
                        "any (for CI).")] = False,
) -> None:
    """Rewrite policy files in the canonical layout (indentation, quoted operators, no
    trailing spaces), keeping comments, key order and flow style. A file that is not a
    valid policy is named and left untouched; so are all the others (exit 1)."""
    files = discover(paths or ["policies"])
    if not files:
        fail(f"{', '.join(paths or ['policies'])}: no policy files (*.yaml) found")
    results: list[Formatted] = []
    refused = 0
    for f in files:
        try:
            load_policy_set([f])  # a policy that is not valid is not touched
            results.append(format_file(f))
        except PolicyError as e:
            print_problems(e)
            refused += 1
        except (FormatError, OSError, UnicodeDecodeError) as e:
            write_lines(f"{f}: {e}", sys.stderr)
            refused += 1
    if refused:
        fail(f"{refused} file(s) cannot be formatted; nothing was rewritten")
    changed = [r for r in results if r.changed]
    if check:
        for r in changed:
            write_lines(f"would reformat {r.path}")
        out.print(f"{len(changed)} of {len(results)} file(s) would change", markup=False)
        if changed:
            raise typer.Exit(EXIT_INVALID)
        return
    for r in changed:
        write_atomically(r.path, r.text)
        write_lines(f"reformatted {r.path}")
    out.print(f"{len(changed)} of {len(results)} file(s) reformatted", markup=False)
