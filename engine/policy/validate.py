"""Checking one policy document: the JSON Schema first, then what a schema cannot say.

Every problem is reported, each at the position of the node it is about, so a person fixes a
file in one pass. A document with any problem builds no Policy.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any, cast

from jsonschema.exceptions import ValidationError

from engine.access.checks import access_problems
from engine.actions import ACTION_NAMES, FAIL_CLOSED_FLOOR, Action
from engine.catalogue import CATALOGUE, FactSpec, nearest, range_hint
from engine.policy.model import (
    OPS,
    AllOf,
    AnyOf,
    Condition,
    Leaf,
    NotOf,
    Op,
    Policy,
    Rule,
    Scalar,
)
from engine.policy.problems import Position, Problem
from engine.policy.yamlsource import YamlDocument, node_position, plain, position_of
from engine.schemas import validator

#: At most this many comparisons in one rule: the rule engine's hard limits are counted in
#: comparisons (engine/rules), and a rule must always fit in one compiled ruleset.
MAX_COMPARISONS_PER_RULE = 48

DEFAULT_FAIL_CLOSED = {
    "SafetyPolicy": "halt",
    "RotationPolicy": "hold",
    "ApprovalPolicy": "require_approval",
    "AccessPolicy": "deny",
}

_PATTERN_MESSAGES = {
    "version": "is not a semantic version: write MAJOR.MINOR.PATCH, e.g. 2.0.0",
    "name": "must be lowercase letters, digits and '-', starting with a letter",
    "id": "must be lowercase letters, digits and '-', starting with a letter",
    "max_fact_age": "is not a duration: write a whole number with s, m, h or d, e.g. 15m",
    "max_clock_skew": "is not a duration: write a whole number with s, m, h or d, e.g. 5s",
    "ttl": "is not a duration: write a whole number with s, m, h or d, e.g. 15m",
}

Path = tuple[str | int, ...]


def check_document(doc: YamlDocument) -> tuple[Policy | None, list[Problem]]:
    """Validate a parsed document; the Policy is built only when no problem was found."""
    data = doc.data
    if not isinstance(data, Mapping):
        return None, [Problem(Position(doc.path, 1, 1),
                              "a policy is a mapping with apiVersion, kind, metadata and spec")]
    semantic = list(_semantic_problems(doc))
    # A value the semantic checks explain (with the fact's unit and range) needs no second,
    # vaguer line from the schema at the same place.
    explained = {p.pos for p in semantic}
    problems = [p for p in _schema_problems(doc) if p.pos not in explained]
    problems = sorted(set(problems + semantic))
    if problems:
        return None, problems
    return _build(doc), []


# --- schema -------------------------------------------------------------------------------


def _schema_problems(doc: YamlDocument) -> Iterator[Problem]:
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
            yield _at(doc, path, f"{where}: not a condition: write a comparison "
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
            yield _at(doc, path, f"{where}: missing required key '{k}'", key=True)
        return
    if kind == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        for k in value:
            if k not in allowed:
                hint = f" (expected one of: {', '.join(allowed)})" if allowed else ""
                yield _at(doc, (*path, k), f"{_label((*path, k))}: unknown key '{k}'{hint}",
                          key=True)
        return
    if kind == "enum":
        options = ", ".join(str(o) for o in cast(list[object], error.validator_value))
        yield _at(doc, path, f"{where}: {_show(value)} is not one of: {options}")
        return
    if kind == "const":
        yield _at(doc, path, f"{where}: must be {_show(error.validator_value)}, "
                             f"not {_show(value)}")
        return
    if kind == "type":
        got = "null" if value is None else f"{_type_name(value)} {_show(value)}"
        hint = ""
        if path and path[-1] == "version" and isinstance(value, (int, float)):
            hint = "; quote it and give all three parts, e.g. \"2.0.0\""
        yield _at(doc, path, f"{where}: expected {_type_text(error.validator_value)}, "
                             f"got {got}{hint}")
        return
    if kind == "pattern":
        last = next((p for p in reversed(path) if isinstance(p, str)), "")
        message = _PATTERN_MESSAGES.get(last, f"does not match {error.validator_value}")
        yield _at(doc, path, f"{where}: {_show(value)} {message}")
        return
    if kind == "minItems":
        if path and path[-1] == "rules":
            yield _at(doc, path, f"{where}: the rule list is empty; a policy needs at least "
                                 "one rule", key=True)
        else:
            yield _at(doc, path, f"{where}: needs at least {error.validator_value} item(s)")
        return
    if kind == "maxItems":
        yield _at(doc, path, f"{where}: at most {error.validator_value} items allowed")
        return
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        words = {"minimum": "at least", "maximum": "at most",
                 "exclusiveMinimum": "greater than", "exclusiveMaximum": "less than"}[kind]
        yield _at(doc, path, f"{where}: {_show(value)} must be {words} "
                             f"{_show(error.validator_value)}")
        return
    yield _at(doc, path, f"{where}: {error.message}")


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


# --- semantics ----------------------------------------------------------------------------


def _semantic_problems(doc: YamlDocument) -> Iterator[Problem]:
    if doc.data.get("kind") == "AccessPolicy":
        yield from access_problems(doc)
        return
    spec = doc.data.get("spec")
    if not isinstance(spec, Mapping):
        return
    if doc.data.get("kind") == "SafetyPolicy":
        yield from _fail_closed_problems(doc, spec.get("fail_closed"))
    rules = spec.get("rules")
    if not isinstance(rules, list):
        return
    seen: dict[str, Path] = {}
    for i, rule in enumerate(rules):
        if not isinstance(rule, Mapping):
            continue
        rpath: Path = ("spec", "rules", i)
        rid = rule.get("id")
        if isinstance(rid, str):
            if rid in seen:
                first = position_of(doc.data, (*seen[rid], "id"), doc.path)
                yield _at(doc, (*rpath, "id"),
                          f"duplicate rule id '{rid}' (first defined at line {first.line})")
            else:
                seen[rid] = rpath
        if "approvers" in rule and doc.data.get("kind") != "ApprovalPolicy":
            yield _at(doc, (*rpath, "approvers"), "'approvers' belongs to ApprovalPolicy rules: "
                                                 "only a held order waits for people", key=True)
        when = rule.get("when")
        if when is not None:
            yield from _condition_problems(doc, when, (*rpath, "when"))
            count = _comparisons(when)
            if count > MAX_COMPARISONS_PER_RULE:
                yield _at(doc, (*rpath, "when"),
                          f"rule '{rid}' has {count} comparisons; at most "
                          f"{MAX_COMPARISONS_PER_RULE} fit in one rule: split it", key=True)


def _fail_closed_problems(doc: YamlDocument, value: object) -> Iterator[Problem]:
    """A fact that cannot be trusted must stop new positions: a fail-closed action weaker
    than FAIL_CLOSED_FLOOR would let a NaN become an order after one approval."""
    if not isinstance(value, str) or value not in ACTION_NAMES:
        return  # not an action at all: the schema says so
    if Action(value).severity < FAIL_CLOSED_FLOOR.severity:
        strong = ", ".join(a for a in ACTION_NAMES
                           if Action(a).severity >= FAIL_CLOSED_FLOOR.severity)
        yield _at(doc, ("spec", "fail_closed"),
                  f"spec.fail_closed: {_show(value)} is too weak: a missing, invalid or stale "
                  f"fact must at least stop new positions; write one of: {strong}")


def _comparisons(cond: object) -> int:
    if isinstance(cond, Mapping):
        if "fact" in cond:
            value = cond.get("value")
            return len(value) if isinstance(value, list) else 1
        return sum(_comparisons(v) for k, v in cond.items() if k in ("all", "any", "not"))
    if isinstance(cond, list):
        return sum(_comparisons(c) for c in cond)
    return 0


def _condition_problems(doc: YamlDocument, cond: object, path: Path) -> Iterator[Problem]:
    if not isinstance(cond, Mapping):
        return
    if "fact" in cond:
        yield from _leaf_problems(doc, cond, path)
        return
    for key in ("all", "any"):
        items = cond.get(key)
        if isinstance(items, list):
            for j, item in enumerate(items):
                yield from _condition_problems(doc, item, (*path, key, j))
    if "not" in cond:
        yield from _condition_problems(doc, cond["not"], (*path, "not"))


def _leaf_problems(doc: YamlDocument, leaf: Mapping[str, Any], path: Path) -> Iterator[Problem]:
    fact, op, value = leaf.get("fact"), leaf.get("op"), leaf.get("value")
    if not isinstance(fact, str):
        return
    spec = CATALOGUE.get(fact)
    if spec is None:
        close = nearest(fact)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        yield _at(doc, (*path, "fact"), f"unknown fact '{fact}'{hint}")
        return
    if not isinstance(op, str) or op not in OPS or "value" not in leaf:
        return  # reported by the schema
    values = value if isinstance(value, list) else [value]
    if op in ("in", "not_in") and not isinstance(value, list):
        yield _at(doc, (*path, "value"), f"operator '{op}' needs a list of values, "
                                         f"e.g. [{_show(value)}]")
        return
    if op not in ("in", "not_in") and isinstance(value, list):
        yield _at(doc, (*path, "value"), f"operator '{op}' compares with one value, not a list; "
                                         "use 'in' for a list")
        return
    yield from _type_problems(doc, spec, op, values, (*path, "value"),
                              listed=isinstance(value, list))


def _type_problems(doc: YamlDocument, spec: FactSpec, op: str, values: list[Any], path: Path,
                   *, listed: bool) -> Iterator[Problem]:
    allowed_ops = {
        "number": OPS, "integer": OPS,
        "boolean": ("==", "!="),
        "string": ("==", "!=", "in", "not_in"),
    }[spec.type]
    if op not in allowed_ops:
        yield _at(doc, (*path[:-1], "op"),
                  f"operator '{op}' does not fit {spec.type} fact '{spec.name}' "
                  f"(use {', '.join(allowed_ops)})")
        return
    for j, v in enumerate(values):
        vpath = (*path, j) if listed else path
        if spec.type in ("number", "integer"):
            if v is None:
                yield _at(doc, vpath, f"'{spec.name}' is compared with a number ({spec.unit}); "
                                      "the value is empty")
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                yield _at(doc, vpath, f"'{spec.name}' is a number ({spec.unit}); "
                                      f"{_show(v)} is {_type_name(v)}")
                continue
            if isinstance(v, int) and abs(v) >= 2**53:
                yield _at(doc, vpath, f"{_show(v)} is too large to compare exactly: a threshold "
                                      f"of '{spec.name}' must be below 2^53")
                continue
            if not math.isfinite(v):
                yield _at(doc, vpath, f"{_show(v)} is not a finite number")
                continue
            if spec.type == "integer" and not float(v).is_integer():
                yield _at(doc, vpath, f"'{spec.name}' counts whole {spec.unit}; "
                                      f"{_show(v)} is not a whole number")
                continue
            if not spec.in_range(float(v)):
                hint = range_hint(spec, float(v))
                yield _at(doc, vpath, f"{_show(v)} is outside the range of '{spec.name}' "
                                      f"({spec.range_text()}, {spec.unit})"
                                      + (f": {hint}" if hint else ""))
        elif spec.type == "boolean":
            if not isinstance(v, bool):
                yield _at(doc, vpath, f"'{spec.name}' is true or false, not {_show(v)}")
        else:
            if not isinstance(v, str):
                yield _at(doc, vpath, f"'{spec.name}' is a string; {_show(v)} is "
                                      f"{_type_name(v)}")
            elif spec.choices and v not in spec.choices:
                yield _at(doc, vpath, f"{_show(v)} is not a value of '{spec.name}' "
                                      f"(one of: {', '.join(spec.choices)})")


# --- building -----------------------------------------------------------------------------


def _build(doc: YamlDocument) -> Policy:
    data = doc.data
    meta, spec = data["metadata"], data["spec"]
    kind = str(data["kind"])
    name = str(meta["name"])
    rules = tuple(
        Rule(
            id=str(r["id"]),
            description=str(r.get("description", "")),
            when=_condition(doc, r["when"], ("spec", "rules", i, "when")),
            action=str(r["action"]),
            pos=position_of(data, ("spec", "rules", i), doc.path),
            policy=name,
        )
        for i, r in enumerate(spec.get("rules", ()))
    )
    age = spec.get("max_fact_age")
    skew = spec.get("max_clock_skew")
    return Policy(
        kind=kind,
        name=name,
        version=str(meta["version"]),
        description=str(meta.get("description", "")),
        owner=str(meta.get("owner", "")),
        path=doc.path,
        text=doc.text,
        rules=rules,
        fail_closed=str(spec.get("fail_closed", DEFAULT_FAIL_CLOSED[kind])),
        max_fact_age=parse_duration(str(age)) if age is not None else None,
        spec=plain(spec),
        max_clock_skew=parse_duration(str(skew)) if skew is not None else None,
    )


def _condition(doc: YamlDocument, node: Mapping[str, Any], path: Path) -> Condition:
    pos = node_position(node, doc.path) or position_of(doc.data, path, doc.path)
    if "fact" in node:
        raw = node["value"]
        value: Scalar | tuple[Scalar, ...] = (
            tuple(_scalar(v) for v in raw) if isinstance(raw, list) else _scalar(raw))
        return Leaf(str(node["fact"]), cast(Op, str(node["op"])), value, pos)
    if "all" in node:
        return AllOf(tuple(_condition(doc, c, (*path, "all", j))
                           for j, c in enumerate(node["all"])), pos)
    if "any" in node:
        return AnyOf(tuple(_condition(doc, c, (*path, "any", j))
                           for j, c in enumerate(node["any"])), pos)
    return NotOf(_condition(doc, node["not"], (*path, "not")), pos)


def _scalar(v: object) -> Scalar:
    # ruamel's round-trip scalars are subclasses that remember formatting; keep plain values.
    if isinstance(v, bool):
        return bool(v)
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v)
    return str(v)


_DURATION = re.compile(r"([1-9][0-9]{0,8})(s|m|h|d)")


def parse_duration(text: str) -> timedelta:
    m = _DURATION.fullmatch(text)
    if not m:
        raise ValueError(f"not a duration: {text!r}")
    n, unit = int(m.group(1)), m.group(2)
    return timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[unit]: n})


# --- helpers ------------------------------------------------------------------------------


def _at(doc: YamlDocument, path: Path, message: str, *, key: bool = False) -> Problem:
    return Problem(position_of(doc.data, path, doc.path, key=key), message)


def _label(path: Path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "document"


def _show(v: object) -> str:
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 2**53:
        return f"an integer of {len(str(abs(v)))} digits"
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, str):
        return repr(str(v))
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return repr(float(v))
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, Mapping):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    return repr(v)


def _type_name(v: object) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, Mapping):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    return type(v).__name__


def _type_text(t: object) -> str:
    names = {"object": "a mapping", "array": "a list", "string": "a string",
             "number": "a finite number", "integer": "a whole number", "boolean": "true or false"}
    if isinstance(t, list):
        return " or ".join(names.get(str(x), str(x)) for x in t)
    return names.get(str(t), str(t))
