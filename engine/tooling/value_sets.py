"""Conditions are analysed as sets of fact values. A condition is turned into disjunctive normal
form: a list of boxes, each box constraining some facts (`not` pushed down to the comparisons,
every other fact free). A number fact's constraint is an interval with open or closed ends,
clipped to the catalogue range (integer facts count whole values only); a boolean or string
fact's constraint is a finite set of values, or every value but a finite set. The analysis
assumes every fact a rule reads is present and valid, which is the only case in which a rule
fires at all: anything else fails closed before the rules are consulted.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from engine.catalogue import CATALOGUE
from engine.policy.model import AllOf, Condition, Leaf, NotOf, Scalar, facts_of

#: Boxes kept while expanding one condition; a larger condition is not analysed (nothing is
#: reported about it rather than something uncertain).
MAX_BOXES = 4096


# --- value sets ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    lo: float
    lo_closed: bool
    hi: float
    hi_closed: bool
    integer: bool = False

    @property
    def empty(self) -> bool:
        if self.integer:
            lo, hi = self._whole()
            return lo > hi
        if self.lo > self.hi:
            return True
        return self.lo == self.hi and not (self.lo_closed and self.hi_closed)

    def _whole(self) -> tuple[float, float]:
        """The smallest and largest whole value inside."""
        if math.isinf(self.lo):
            lo = self.lo
        else:
            lo = math.ceil(self.lo) if self.lo_closed else math.floor(self.lo) + 1
        if math.isinf(self.hi):
            hi = self.hi
        else:
            hi = math.floor(self.hi) if self.hi_closed else math.ceil(self.hi) - 1
        return lo, hi

    def intersect(self, other: Interval) -> Interval:
        if self.lo > other.lo or (self.lo == other.lo and not self.lo_closed):
            lo, lo_closed = self.lo, self.lo_closed
        else:
            lo, lo_closed = other.lo, other.lo_closed
        if self.hi < other.hi or (self.hi == other.hi and not self.hi_closed):
            hi, hi_closed = self.hi, self.hi_closed
        else:
            hi, hi_closed = other.hi, other.hi_closed
        return Interval(lo, lo_closed, hi, hi_closed, self.integer or other.integer)

    def covers(self, other: Interval) -> bool:
        """Whether every value of `other` is in this interval."""
        if other.empty:
            return True
        lo_ok = self.lo < other.lo or (self.lo == other.lo and (self.lo_closed
                                                                or not other.lo_closed))
        hi_ok = self.hi > other.hi or (self.hi == other.hi and (self.hi_closed
                                                                or not other.hi_closed))
        return lo_ok and hi_ok

    def text(self) -> str:
        left = "[" if self.lo_closed else "("
        right = "]" if self.hi_closed else ")"
        return f"{left}{num_text(self.lo)}, {num_text(self.hi)}{right}"


@dataclass(frozen=True)
class ValueSet:
    """A set of boolean or string values: `values`, or every value but them (`cofinite`)."""

    values: frozenset[bool | str]
    cofinite: bool = False

    @property
    def empty(self) -> bool:
        return not self.cofinite and not self.values

    def intersect(self, other: ValueSet) -> ValueSet:
        if self.cofinite and other.cofinite:
            return ValueSet(self.values | other.values, True)
        if self.cofinite:
            return ValueSet(other.values - self.values)
        if other.cofinite:
            return ValueSet(self.values - other.values)
        return ValueSet(self.values & other.values)

    def text(self) -> str:
        shown = ", ".join(sorted(value_text(v) for v in self.values))
        return f"not in {{{shown}}}" if self.cofinite else f"{{{shown}}}"


Domain = Interval | ValueSet
Box = Mapping[str, Domain]


class TooComplex(Exception):
    """A condition expands into more than MAX_BOXES boxes."""


def full_domain(fact: str) -> Domain:
    spec = CATALOGUE[fact]
    if spec.type in ("number", "integer"):
        lo = -math.inf if spec.minimum is None else spec.minimum
        hi = math.inf if spec.maximum is None else spec.maximum
        return Interval(lo, spec.minimum is not None, hi, spec.maximum is not None,
                        spec.type == "integer")
    if spec.type == "boolean":
        return ValueSet(frozenset({True, False}))
    if spec.choices:
        return ValueSet(frozenset(spec.choices))
    return ValueSet(frozenset(), True)


_NEGATE: dict[str, str] = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "==",
                           "in": "not_in", "not_in": "in"}


def leaf_domains(fact: str, op: str, value: Scalar | tuple[Scalar, ...]) -> list[Domain]:
    """The values of `fact` for which `fact op value` holds, as a union of domains."""
    full = full_domain(fact)
    if isinstance(full, Interval):
        return [d for d in (full.intersect(i) for i in _intervals(op, value)) if not d.empty]
    items = value if isinstance(value, tuple) else (value,)
    values = frozenset(v for v in items if isinstance(v, (bool, str)))
    found = full.intersect(ValueSet(values, op not in ("==", "in")))
    return [] if found.empty else [found]


def _intervals(op: str, value: Scalar | tuple[Scalar, ...]) -> list[Interval]:
    inf = math.inf
    if isinstance(value, tuple) != (op in ("in", "not_in")):
        raise TooComplex  # refused by the validator; never guess
    if isinstance(value, tuple):
        points = sorted({float(v) for v in value if not isinstance(v, str)})
        if op == "in":
            return [Interval(p, True, p, True) for p in points]
        edges = [-inf, *points, inf]
        return [Interval(a, False, b, False) for a, b in itertools.pairwise(edges)]
    if isinstance(value, str):  # refused by the validator for number facts
        raise TooComplex
    v = float(value)
    return {
        "<": [Interval(-inf, False, v, False)],
        "<=": [Interval(-inf, False, v, True)],
        ">": [Interval(v, False, inf, False)],
        ">=": [Interval(v, True, inf, False)],
        "==": [Interval(v, True, v, True)],
        "!=": [Interval(-inf, False, v, False), Interval(v, False, inf, False)],
    }[op]


def _meet(a: Box, b: Box) -> Box | None:
    out = dict(a)
    for fact, d in b.items():
        mine = out.get(fact)
        if mine is None:
            out[fact] = d
            continue
        both = _intersect(mine, d)
        if both.empty:
            return None
        out[fact] = both
    return out


def _intersect(a: Domain, b: Domain) -> Domain:
    if isinstance(a, Interval) and isinstance(b, Interval):
        return a.intersect(b)
    if isinstance(a, ValueSet) and isinstance(b, ValueSet):
        return a.intersect(b)
    raise TooComplex  # one fact is always one kind of domain; never guess if it is not


def dnf(cond: Condition, negate: bool = False) -> list[Box]:
    """The condition (or its negation) as a union of non-empty boxes; raises TooComplex."""
    if isinstance(cond, Leaf):
        op = _NEGATE[cond.op] if negate else cond.op
        return [{cond.fact: d} for d in leaf_domains(cond.fact, op, cond.value)]
    if isinstance(cond, NotOf):
        return dnf(cond.item, not negate)
    if isinstance(cond, AllOf) != negate:
        return conjoin(dnf(c, negate) for c in cond.items)
    out: list[Box] = []
    for c in cond.items:
        out.extend(dnf(c, negate))
        if len(out) > MAX_BOXES:
            raise TooComplex
    return out


def conjoin(parts: Iterable[list[Box]]) -> list[Box]:
    acc: list[Box] = [{}]
    for part in parts:
        acc = [m for a in acc for b in part if (m := _meet(a, b)) is not None]
        if len(acc) > MAX_BOXES:
            raise TooComplex
        if not acc:
            return []
    return acc


def satisfiable(cond: Condition) -> bool | None:
    """Whether some valid values make the condition true; None when too large to tell."""
    try:
        return bool(dnf(cond))
    except TooComplex:
        return None


def implies(a: Condition, b: Condition) -> bool:
    """True only when every valid value that makes `a` true makes `b` true (certain)."""
    if not set(facts_of(b)) <= set(facts_of(a)):
        return False
    try:
        return not conjoin([dnf(a), dnf(b, negate=True)])
    except TooComplex:
        return False


def num_text(x: float) -> str:
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def value_text(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v)
