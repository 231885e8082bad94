"""fugger facts: the fact catalogue, every fact a policy may name."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.common import Format, out
from engine.catalogue import CATALOGUE, FactSpec


def _json(spec: FactSpec) -> dict[str, Any]:
    return {"name": spec.name, "type": spec.type, "unit": spec.unit, "minimum": spec.minimum,
            "maximum": spec.maximum, "range": spec.range_text(), "meaning": spec.meaning,
            "choices": list(spec.choices)}


def facts(
    fmt: Annotated[Format, typer.Option("--format", help="text for people, json for "
                                                         "programs (one object per line).")] =
    Format.text,
) -> None:
    """Every fact a policy may name: its type, unit, range and meaning. A snapshot key that
    is not listed here is read by no rule."""
    if fmt is Format.json:
        for spec in CATALOGUE.values():
            sys.stdout.write(json.dumps(_json(spec)) + "\n")
        return
    table = Table(title=f"{len(CATALOGUE)} facts", title_justify="left")
    for col in ("name", "type", "unit", "range", "meaning"):
        table.add_column(col, overflow="fold")
    for spec in CATALOGUE.values():
        allowed = f"one of {', '.join(spec.choices)}" if spec.choices else spec.range_text()
        if spec.type == "boolean":
            allowed = "true, false"
        table.add_row(spec.name, spec.type, spec.unit, allowed, spec.meaning)
    out.print(table, markup=False)
