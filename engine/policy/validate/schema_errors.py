"""JSON Schema errors of a policy document, each told as a problem a person can act on, at
the position of the node it is about."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, cast

from jsonschema.exceptions import ValidationError

from engine.names import did_you_mean
from engine.policy.problems import Problem
from engine.policy.validate.wording import Path, at, show, type_name
from engine.policy.yamlsource import YamlDocument
from engine.schemas import validator

_PATTERN_MESSAGES = {
    "version": "is not a semantic version: write MAJOR.MINOR.PATCH, e.g. 2.0.0",
    "name": "must be lowercase letters, digits and '-', starting with a letter",
    "id": "must be lowercase letters, digits and '-', starting with a letter",
    "max_fact_age": "is not a duration: write a whole number with s, m, h or d, e.g. 15m",
    "max_clock_skew": "is not a duration: write a whole number with s, m, h or d, e.g. 5s",
    "ttl": "is not a duration: write a whole number with s, m, h or d, e.g. 15m",
}


def schema_problems(doc: YamlDocument) -> Iterator[Problem]:
    for error in validator("policy").iter_errors(doc.data):
        yield from _render(doc, error)


def _render(doc: YamlDocument, error: ValidationError) -> Iterator[Problem]:
    path: Path = tuple(error.absolute_path)
    where = _label(path)
    value: Any = error.instance
    kind = error.validator
    schema: Any = error.schema
    if kind == "oneOf":
        branch = _condition_branch(value)
        if branch is None:
            yield at(doc, path, f"{where}: not a condition: write a comparison "
                                "{fact, op, value} or one of all, any, not")
            return
        chosen = [e for e in (error.context or []) if e.relative_schema_path[0] == branch]
        for sub in chosen:
            yield from _render(doc, sub)
        return
    if kind in ("if", "allOf", "then"):
        return
    if kind == "required":
        missing = [k for k in cast(list[str], error.validator_value) if k not in value]
        for k in missing:
            yield at(doc, path, f"{where}: missing required key '{k}'", key=True)
        return
    if kind == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        for k in value:
            if k not in allowed:
                hint = f" (expected one of: {', '.join(allowed)})" if allowed else ""
                yield at(doc, (*path, k), f"{_label((*path, k))}: unknown key '{k}'{hint}",
                         key=True)
        return
    if kind == "enum":
        choices = [str(o) for o in cast(list[object], error.validator_value)]
        yield at(doc, path, f"{where}: {show(value)} is not one of: {', '.join(choices)}"
                            + _suggestion(value, choices))
        return
    if kind == "const":
        yield at(doc, path, f"{where}: must be {show(error.validator_value)}, "
                            f"not {show(value)}")
        return
    if kind == "type":
        got = "null" if value is None else f"{type_name(value)} {show(value)}"
        hint = ""
        if path and path[-1] == "version" and isinstance(value, (int, float)):
            hint = "; quote it and give all three parts, e.g. \"2.0.0\""
        yield at(doc, path, f"{where}: expected {_type_text(error.validator_value)}, "
                            f"got {got}{hint}")
        return
    if kind == "pattern":
        last = next((p for p in reversed(path) if isinstance(p, str)), "")
        message = _PATTERN_MESSAGES.get(last, f"does not match {error.validator_value}")
        yield at(doc, path, f"{where}: {show(value)} {message}")
        return
    if kind == "minItems":
        if path and path[-1] == "rules":
            yield at(doc, path, f"{where}: the rule list is empty; a policy needs at least "
                                "one rule", key=True)
        else:
            yield at(doc, path, f"{where}: needs at least {error.validator_value} item(s)")
        return
    if kind == "maxItems":
        yield at(doc, path, f"{where}: at most {error.validator_value} items allowed")
        return
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        words = {"minimum": "at least", "maximum": "at most",
                 "exclusiveMinimum": "greater than", "exclusiveMaximum": "less than"}[kind]
        yield at(doc, path, f"{where}: {show(value)} must be {words} "
                            f"{show(error.validator_value)}")
        return
    yield at(doc, path, f"{where}: {error.message}")


def _condition_branch(instance: object) -> int | None:
    """Which alternative of a `oneOf` the author meant; the order follows policy.schema.json
    (conditions: leaf, all, any, not; leaf values: scalar, list)."""
    if isinstance(instance, Mapping):
        for i, k in enumerate(("fact", "all", "any", "not")):
            if k in instance:
                return i
        if "op" in instance or "value" in instance:
            return 0
        return None
    if isinstance(instance, list):
        return 1
    return 0


def _label(path: Path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "document"


def _type_text(t: object) -> str:
    names = {"object": "a mapping", "array": "a list", "string": "a string",
             "number": "a finite number", "integer": "a whole number", "boolean": "true or false"}
    if isinstance(t, list):
        return " or ".join(names.get(str(x), str(x)) for x in t)
    return names.get(str(t), str(t))


def _suggestion(value: object, choices: list[str]) -> str:
    """'; did you mean X?' for a misspelt choice; an operator written backwards (=>, =<)
    is turned around."""
    if not isinstance(value, str):
        return ""
    turned = value[::-1]
    if len(value) == 2 and turned in choices:
        return f"; did you mean {turned}?"
    if value == "=" and "==" in choices:
        return "; did you mean ==?"
    hint = did_you_mean(value, choices)
    return f"; {hint}" if hint else ""
