"""The published JSON Schemas, loaded once, with a type checker that is strict about numbers.

jsonschema's default checker lets NaN, infinities and booleans pass as numbers; a policy or a
decision with any of them is wrong, so "number" here means a finite int or float, never a bool.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.protocols import Validator

_HERE = Path(__file__).resolve().parent
_CANDIDATES = (_HERE / "_data" / "schemas", _HERE.parent / "schemas")


def schema_dir() -> Path:
    for d in _CANDIDATES:
        if (d / "policy.schema.json").is_file():
            return d
    raise FileNotFoundError("the FuggerBot schemas are missing from this installation")


def _is_number(_checker: Any, instance: object) -> bool:
    if isinstance(instance, bool):
        return False
    if isinstance(instance, int):
        return True
    return isinstance(instance, float) and math.isfinite(instance)


def _is_integer(_checker: Any, instance: object) -> bool:
    if isinstance(instance, bool):
        return False
    if isinstance(instance, int):
        return True
    return isinstance(instance, float) and math.isfinite(instance) and instance.is_integer()


_TYPE_CHECKER = Draft202012Validator.TYPE_CHECKER.redefine_many(
    {"number": _is_number, "integer": _is_integer})
StrictValidator = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator, type_checker=_TYPE_CHECKER)


@cache
def load_schema(name: str) -> dict[str, Any]:
    with open(schema_dir() / f"{name}.schema.json", encoding="utf-8") as f:
        schema: dict[str, Any] = json.load(f)
    return schema


@cache
def validator(name: str) -> Validator:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    v: Validator = StrictValidator(schema)
    return v
