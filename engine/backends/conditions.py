"""Conditions as numpy expressions over fact columns, with the semantics of
`engine.rules.reference.holds` (and so of the compiled durable-rules): a comparison on a cell
that cannot be read is false whichever way it is negated, and `not` is pushed down to the
comparisons."""

from __future__ import annotations

from collections.abc import Mapping
from functools import reduce
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.backends.columns import Mask
from engine.policy.model import AllOf, Condition, Leaf, NotOf, Scalar

_ORDER = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}


def holds(cond: Condition, values: Mapping[str, npt.NDArray[Any]],
          known: Mapping[str, Mask], n: int, negate: bool = False) -> Mask:
    """The cells where `cond` holds; `values` and `known` are the policy's columns."""
    if isinstance(cond, Leaf):
        result = compare(cond, values[cond.fact])
        return known[cond.fact] & (~result if negate else result)
    if isinstance(cond, NotOf):
        return holds(cond.item, values, known, n, not negate)
    masks = [holds(c, values, known, n, negate) for c in cond.items]
    if isinstance(cond, AllOf) != negate:
        return reduce(np.logical_and, masks, np.ones(n, dtype=bool))
    return reduce(np.logical_or, masks, np.zeros(n, dtype=bool))


def compare(leaf: Leaf, col: npt.NDArray[Any]) -> Mask:
    """`reference.compare` for every cell at once (cells that cannot be read are masked out by
    the caller, so their placeholder value does not matter)."""
    v = leaf.value
    op = leaf.op
    if op in ("in", "not_in"):
        inside = _equal_any(col, v if isinstance(v, tuple) else ())
        return inside if op == "in" else ~inside
    if isinstance(v, tuple):
        return np.zeros(len(col), dtype=bool)
    if op == "==":
        return _equal(col, v)
    if op == "!=":
        return ~_equal(col, v)
    if col.dtype != np.float64 or isinstance(v, (str, bool)):
        return np.zeros(len(col), dtype=bool)  # no order between strings, flags and numbers
    return np.asarray(_ORDER[op](col, v), dtype=bool)


def _equal(col: npt.NDArray[Any], v: Scalar) -> Mask:
    if col.dtype == np.float64:
        if isinstance(v, (str, bool)):
            return np.zeros(len(col), dtype=bool)
        return np.asarray(np.equal(col, v), dtype=bool)
    # Objects: a flag equals only a flag, a string only a string (Python's 1 == True is not
    # the engine's).
    return np.fromiter((type(x) is type(v) and x == v for x in col), dtype=bool,
                       count=len(col))


def _equal_any(col: npt.NDArray[Any], values: tuple[Scalar, ...]) -> Mask:
    return reduce(np.logical_or, (_equal(col, v) for v in values),
                  np.zeros(len(col), dtype=bool))
