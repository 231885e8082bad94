"""A plain-Python evaluation of conditions with the same semantics as the compiled rules.

Used to explain, comparison by comparison, why a rule matched or not, and to check the rule
engine against in tests. An unknown fact (absent from `values`) makes every comparison on it
false, whichever way it is negated, exactly as the compiled rules behave.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from engine.policy.model import AllOf, AnyOf, Condition, Leaf, NotOf, Scalar


@dataclass(frozen=True)
class Comparison:
    leaf: Leaf
    observed: Scalar | None
    result: bool | None  # None: the fact is unknown
    #: Under an odd number of `not`: the rule needs this comparison false.
    negated: bool = False

    @property
    def margin(self) -> float | None:
        """How far the observed value is from the threshold, towards what the rule needs
        (this comparison true, or false under `not`): positive is room left before it trips,
        zero or below is at or past it. None for a comparison that is not an ordering of
        numbers, or an unknown fact."""
        v, seen = self.leaf.value, self.observed
        if self.leaf.op not in ("<", "<=", ">", ">=") or seen is None or \
                isinstance(seen, (str, bool)) or isinstance(v, (str, bool, tuple)):
            return None
        room = float(seen) - float(v) if self.leaf.op in ("<", "<=") else float(v) - float(seen)
        return -room if self.negated else room

    def text(self) -> str:
        seen = "unknown" if self.observed is None else repr(self.observed)
        verdict = {True: "true", False: "false", None: "unknown"}[self.result]
        return f"{self.leaf.text()}  (observed {seen}: {verdict})"


def holds(cond: Condition, values: Mapping[str, Scalar], negate: bool = False) -> bool:
    if isinstance(cond, Leaf):
        if cond.fact not in values:
            return False
        result = compare(cond, values[cond.fact])
        return (not result) if negate else result
    if isinstance(cond, NotOf):
        return holds(cond.item, values, not negate)
    conj = isinstance(cond, AllOf) != negate
    results = (holds(c, values, negate) for c in cond.items)
    return all(results) if conj else any(results)


def compare(leaf: Leaf, observed: Scalar) -> bool:
    v = leaf.value
    op = leaf.op
    if op == "in":
        return isinstance(v, tuple) and observed in v
    if op == "not_in":
        return isinstance(v, tuple) and observed not in v
    if isinstance(v, tuple):
        return False
    if op == "==":
        return observed == v
    if op == "!=":
        return observed != v
    if isinstance(observed, (str, bool)) or isinstance(v, (str, bool)):
        return False
    if op == "<":
        return observed < v
    if op == "<=":
        return observed <= v
    if op == ">":
        return observed > v
    return observed >= v


def comparisons(cond: Condition, values: Mapping[str, Scalar]) -> list[Comparison]:
    out: list[Comparison] = []

    def walk(c: Condition, negated: bool) -> None:
        if isinstance(c, Leaf):
            seen = values.get(c.fact)
            out.append(Comparison(c, seen, None if seen is None else compare(c, seen),
                                  negated))
        elif isinstance(c, NotOf):
            walk(c.item, not negated)
        elif isinstance(c, (AllOf, AnyOf)):
            for item in c.items:
                walk(item, negated)

    walk(cond, False)
    return out
