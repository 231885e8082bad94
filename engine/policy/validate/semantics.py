"""What the schema cannot say about a policy document: facts that exist, values in their
range and of their type, operators that fit, rule ids used once, a fail-closed action strong
enough and rules small enough for the rule engine."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from engine.access.checks import access_problems
from engine.actions import ACTION_NAMES, FAIL_CLOSED_FLOOR, Action
from engine.catalogue import CATALOGUE, FactSpec, nearest, range_hint
from engine.policy.model import OPS
from engine.policy.problems import Problem
from engine.policy.validate.wording import Path, at, show, type_name
from engine.policy.yamlsource import YamlDocument, position_of

#: At most this many comparisons in one rule: the rule engine's hard limits are counted in
#: comparisons (engine/rules), and a rule must always fit in one compiled ruleset.
MAX_COMPARISONS_PER_RULE = 48


def semantic_problems(doc: YamlDocument) -> Iterator[Problem]:
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
                yield at(doc, (*rpath, "id"),
                         f"duplicate rule id '{rid}' (first defined at line {first.line})")
            else:
                seen[rid] = rpath
        if "approvers" in rule and doc.data.get("kind") != "ApprovalPolicy":
            yield at(doc, (*rpath, "approvers"), "'approvers' belongs to ApprovalPolicy rules: "
                                                "only a held order waits for people", key=True)
        when = rule.get("when")
        if when is not None:
            yield from _condition_problems(doc, when, (*rpath, "when"))
            count = _comparisons(when)
            if count > MAX_COMPARISONS_PER_RULE:
                yield at(doc, (*rpath, "when"),
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
        yield at(doc, ("spec", "fail_closed"),
                 f"spec.fail_closed: {show(value)} is too weak: a missing, invalid or stale "
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
        yield at(doc, (*path, "fact"), f"unknown fact '{fact}'{hint}")
        return
    if not isinstance(op, str) or op not in OPS or "value" not in leaf:
        return  # reported by the schema
    values = value if isinstance(value, list) else [value]
    if op in ("in", "not_in") and not isinstance(value, list):
        yield at(doc, (*path, "value"), f"operator '{op}' needs a list of values, "
                                        f"e.g. [{show(value)}]")
        return
    if op not in ("in", "not_in") and isinstance(value, list):
        yield at(doc, (*path, "value"), f"operator '{op}' compares with one value, not a list; "
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
        yield at(doc, (*path[:-1], "op"),
                 f"operator '{op}' does not fit {spec.type} fact '{spec.name}' "
                 f"(use {', '.join(allowed_ops)})")
        return
    for j, v in enumerate(values):
        vpath = (*path, j) if listed else path
        if spec.type in ("number", "integer"):
            if v is None:
                yield at(doc, vpath, f"'{spec.name}' is compared with a number ({spec.unit}); "
                                     "the value is empty")
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                yield at(doc, vpath, f"'{spec.name}' is a number ({spec.unit}); "
                                     f"{show(v)} is {type_name(v)}")
                continue
            if isinstance(v, int) and abs(v) >= 2**53:
                yield at(doc, vpath, f"{show(v)} is too large to compare exactly: a threshold "
                                     f"of '{spec.name}' must be below 2^53")
                continue
            if not math.isfinite(v):
                yield at(doc, vpath, f"{show(v)} is not a finite number")
                continue
            if spec.type == "integer" and not float(v).is_integer():
                yield at(doc, vpath, f"'{spec.name}' counts whole {spec.unit}; "
                                     f"{show(v)} is not a whole number")
                continue
            if not spec.in_range(float(v)):
                hint = range_hint(spec, float(v))
                yield at(doc, vpath, f"{show(v)} is outside the range of '{spec.name}' "
                                     f"({spec.range_text()}, {spec.unit})"
                                     + (f": {hint}" if hint else ""))
        elif spec.type == "boolean":
            if not isinstance(v, bool):
                yield at(doc, vpath, f"'{spec.name}' is true or false, not {show(v)}")
        else:
            if not isinstance(v, str):
                yield at(doc, vpath, f"'{spec.name}' is a string; {show(v)} is "
                                     f"{type_name(v)}")
            elif spec.choices and v not in spec.choices:
                yield at(doc, vpath, f"{show(v)} is not a value of '{spec.name}' "
                                     f"(one of: {', '.join(spec.choices)})")
