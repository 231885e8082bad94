"""Reading fact snapshots from JSON, JSONL or CSV, with the position of every snapshot.

A file that cannot be read as a whole is refused before anything is evaluated, so a bad line
never leaves half a batch recorded.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from engine.catalogue import CATALOGUE

MAX_ERRORS = 20


@dataclass(frozen=True)
class SourcedSnapshot:
    where: str  # FILE:LINE
    data: Any


class FactsError(Exception):
    """The facts input cannot be read; every message names file and line."""

    def __init__(self, messages: list[str]) -> None:
        self.messages = messages
        super().__init__("\n".join(messages))


def read_snapshots(path: str, fmt: str = "auto") -> list[SourcedSnapshot]:
    """All snapshots of `path` ('-' for standard input). `fmt`: auto, json, jsonl or csv."""
    name = "<stdin>" if path == "-" else path
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except OSError as e:
        raise FactsError([f"{name}: cannot read facts: {e.strerror}"]) from e
    except UnicodeDecodeError as e:
        raise FactsError([f"{name}: facts are not valid UTF-8 text"]) from e
    kind = fmt if fmt != "auto" else _sniff(path, text)
    if kind == "csv":
        return list(_csv(name, text))
    if kind == "json":
        return _json(name, text)
    return _jsonl(name, text)


def _sniff(path: str, text: str) -> str:
    lower = path.lower()
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith(".jsonl") or lower.endswith(".ndjson"):
        return "jsonl"
    stripped = text.lstrip()
    if stripped.startswith("["):
        return "json"
    if stripped.startswith("{"):
        # one object spread over lines is JSON; one object per line is JSONL
        try:
            json.loads(stripped)
            return "json"
        except json.JSONDecodeError:
            return "jsonl"
    if lower.endswith(".json"):
        return "json"
    return "csv" if "," in stripped.split("\n", 1)[0] else "jsonl"


def _json(name: str, text: str) -> list[SourcedSnapshot]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise FactsError([f"{name}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}"]) from e
    except RecursionError as e:
        raise FactsError([f"{name}:1: JSON nested too deeply to be a snapshot"]) from e
    if isinstance(data, list):
        return [SourcedSnapshot(f"{name}:[{i}]", item) for i, item in enumerate(data)]
    return [SourcedSnapshot(f"{name}:1", data)]


def _jsonl(name: str, text: str) -> list[SourcedSnapshot]:
    out: list[SourcedSnapshot] = []
    errors: list[str] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(SourcedSnapshot(f"{name}:{n}", json.loads(line)))
        except json.JSONDecodeError as e:
            errors.append(f"{name}:{n}:{e.colno}: invalid JSON: {e.msg}")
        except RecursionError:
            errors.append(f"{name}:{n}: JSON nested too deeply to be a snapshot")
            if len(errors) >= MAX_ERRORS:
                errors.append(f"{name}: more errors not shown")
                break
    if errors:
        raise FactsError(errors)
    return out


def _csv(name: str, text: str) -> Iterator[SourcedSnapshot]:
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        return
    header = [h.strip() for h in header]
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise FactsError([f"{name}:1: column(s) {', '.join(repeated)} appear more than once; "
                          "which one holds the fact would be a guess"])
    if "ts" not in header or "symbol" not in header:
        raise FactsError([f"{name}:1: a CSV of facts needs 'ts' and 'symbol' columns "
                          f"(found: {', '.join(header)})"])
    errors: list[str] = []
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            errors.append(f"{name}:{line}: {len(row)} cells for {len(header)} columns")
            continue
        snap: dict[str, Any] = {}
        for col, cell in zip(header, row, strict=True):
            cell = cell.strip()
            if cell == "":
                continue  # an empty cell is a missing fact, never a zero
            snap[col] = cell if col in ("ts", "symbol") else _cell(col, cell)
        yield SourcedSnapshot(f"{name}:{line}", snap)
    if errors:
        raise FactsError(errors[:MAX_ERRORS])


def _cell(column: str, cell: str) -> Any:
    spec = CATALOGUE.get(column)
    kind = spec.type if spec else "auto"
    if kind == "boolean":
        low = cell.lower()
        return {"true": True, "false": False}.get(low, cell)
    if kind == "string":
        return cell
    try:
        value = float(cell)
    except ValueError:
        return cell  # the fact check reports a string where a number belongs
    if kind == "integer" and math.isfinite(value) and value.is_integer():
        return int(value)
    return value
