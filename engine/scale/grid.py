"""A grid of thresholds for a sweep: `RULE=V1,V2` (or `RULE:FACT=V1,V2` when the rule compares
more than one fact) makes one candidate policy set per value, or per combination of values
when several axes are given, each the live set with those thresholds changed in its YAML.

Every candidate is checked by the loader like any policy set: a value the fact cannot take
(a volatility of -1) refuses the grid, naming the point.
"""

from __future__ import annotations

import io
import itertools
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML

from engine.names import unknown_name
from engine.policy.loader import policy_set_from_texts
from engine.policy.model import PolicySet, leaves
from engine.policy.problems import PolicyError

#: More candidates than this is a mistake more often than a plan: each is a whole replay.
MAX_CANDIDATES = 64
_AXIS = re.compile(r"(?P<rule>[^:=\s]+)(?::(?P<fact>[^:=\s]+))?=(?P<values>.+)")


class GridError(ValueError):
    """A grid that names no rule, an ambiguous fact, a value that is not a number, or a point
    whose policy set does not validate."""


@dataclass(frozen=True)
class Axis:
    rule: str
    fact: str | None
    values: tuple[float, ...]

    def label(self, fact: str, value: float) -> str:
        return f"{self.rule}{':' + fact if self.fact else ''}={value:g}"


def parse_axis(text: str) -> Axis:
    """`RULE=V1,V2,...` or `RULE:FACT=V1,V2,...`."""
    m = _AXIS.fullmatch(text.strip())
    if m is None:
        raise GridError(f"--grid {text!r}: write RULE=V1,V2,... or RULE:FACT=V1,V2,...")
    values: list[float] = []
    for cell in m["values"].split(","):
        try:
            value = float(cell.strip())
        except ValueError:
            raise GridError(f"--grid {text!r}: {cell.strip()!r} is not a number") from None
        if not math.isfinite(value):
            raise GridError(f"--grid {text!r}: {cell.strip()!r} is not a finite number")
        values.append(value)
    if len(set(values)) != len(values):
        raise GridError(f"--grid {text!r}: a value is given twice")
    return Axis(m["rule"], m["fact"], tuple(values))


def candidates(live: PolicySet, axes: Sequence[Axis]) -> list[tuple[str, PolicySet]]:
    """One (label, policy set) per point of the grid, in the order the values were given."""
    targets = [_target(live, axis) for axis in axes]
    points = list(itertools.product(*(axis.values for axis in axes)))
    if len(points) > MAX_CANDIDATES:
        raise GridError(f"the grid makes {len(points)} policy sets, each a whole replay; at "
                        f"most {MAX_CANDIDATES}: give fewer values")
    out = []
    for point in points:
        texts = {p.path: p.text for p in live.policies}
        labels = []
        for (path, fact), axis, value in zip(targets, axes, point, strict=True):
            texts[path] = _with_threshold(texts[path], axis.rule, fact, value)
            labels.append(axis.label(fact, value))
        label = " ".join(labels)
        try:
            out.append((label, policy_set_from_texts(tuple(texts.items()))))
        except PolicyError as e:
            raise GridError(f"grid point {label}: the policy set does not validate:\n{e}"
                            ) from None
    return out


def _target(live: PolicySet, axis: Axis) -> tuple[str, str]:
    """The file that holds `axis.rule`, and the fact whose thresholds change."""
    holders = [(p, r) for p in live.policies for r in p.rules if r.id == axis.rule]
    if not holders:
        raise GridError("--grid: " + unknown_name(
            "rule", axis.rule, (r.id for p in live.policies for r in p.rules)))
    if len(holders) > 1:
        raise GridError(f"--grid: rule {axis.rule} is in more than one policy "
                        f"({', '.join(p.name for p, _ in holders)}); which one is a guess")
    policy, rule = holders[0]
    # Only a comparison with a number has a threshold to move.
    facts = list(dict.fromkeys(leaf.fact for leaf in leaves(rule.when)
                               if _is_number(leaf.value)))
    if not facts:
        raise GridError(f"--grid: rule {axis.rule} compares no fact with a number")
    if axis.fact is None:
        if len(facts) != 1:
            raise GridError(f"--grid: rule {axis.rule} compares {', '.join(facts)}; name one "
                            f"as {axis.rule}:FACT=...")
        return policy.path, facts[0]
    if axis.fact not in facts:
        raise GridError(f"--grid: rule {axis.rule} does not compare {axis.fact} (it compares "
                        f"{', '.join(facts)})")
    return policy.path, axis.fact


def _with_threshold(text: str, rule_id: str, fact: str, value: float) -> str:
    """The policy text with every comparison of `fact` in rule `rule_id` set to `value`,
    comments and layout kept."""
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 100
    doc = yaml.load(io.StringIO(text))
    rule = next(r for r in doc["spec"]["rules"] if r.get("id") == rule_id)
    for comparison in _comparisons(rule["when"]):
        if comparison.get("fact") == fact and _is_number(comparison.get("value")):
            comparison["value"] = int(value) if value.is_integer() and isinstance(
                comparison.get("value"), int) else value
    buf = io.StringIO()
    yaml.dump(doc, buf)
    return buf.getvalue()


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _comparisons(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        if "fact" in node:
            yield node
        for key in ("all", "any"):
            for child in node.get(key) or ():
                yield from _comparisons(child)
        if "not" in node:
            yield from _comparisons(node["not"])
