"""Fact columns: the values of one fact across many snapshots, checked as the evaluator checks
them, with a mask of the cells a rule may read.

The common cell, a plain float inside its catalogue range, is recognised for the whole column
at once; every other cell (an integer, a dated fact, a string, NaN, a missing key...) goes
through `engine.facts.read_fact`, the one definition of what makes a fact unusable. So a
column never decides on its own what is missing, invalid or stale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.catalogue import CATALOGUE
from engine.evaluator import fast_bounds
from engine.facts import Finding, Snapshot, read_fact
from engine.policy.model import Scalar

Mask = npt.NDArray[np.bool_]


@dataclass
class Column:
    """One fact over n snapshots: `values` (float64 for numbers, objects otherwise) and the
    values of the cells that took the full check, exactly as `read_fact` returned them."""

    name: str
    values: npt.NDArray[Any]
    #: Cells that passed the whole-column fast check: the same for every policy.
    fast: Mask
    checked: dict[int, Scalar] = field(default_factory=dict)

    @property
    def numeric(self) -> bool:
        return bool(self.values.dtype == np.float64)

    def value(self, i: int) -> Scalar:
        """The checked value of cell i (a cell a rule may read)."""
        if i in self.checked:
            return self.checked[i]
        v = self.values[i]
        return float(v) if self.numeric else v


def column(name: str, snapshots: Sequence[Snapshot]) -> Column:
    """The column of fact `name`, with its fast cells marked; the rest are checked per policy
    by `usable`."""
    spec = CATALOGUE[name]
    raw = [s.raw.get(name) for s in snapshots]
    if spec.type not in ("number", "integer"):
        return Column(name, np.array([None] * len(raw), dtype=object),
                      np.zeros(len(raw), dtype=bool))
    nan = math.nan
    values = np.array([v if type(v) is float else nan for v in raw], dtype=np.float64)
    if spec.type == "integer":  # whole numbers are checked and made int by read_fact
        return Column(name, values, np.zeros(len(raw), dtype=bool))
    lo, hi = fast_bounds((name,))[name]
    # NaN and infinities fail, so a non-float, NaN or infinite cell is left for the full
    # check, as in the evaluator's own fast path.
    fast = (values >= lo) & (values <= hi)
    return Column(name, values, fast)


def usable(col: Column, snapshots: Sequence[Snapshot], max_age: timedelta | None,
           ) -> tuple[Mask, dict[int, Finding]]:
    """Which cells of `col` a policy with `max_age` may read, and the finding of every cell it
    may not (aged against each snapshot's own ts: the snapshot clock)."""
    known = col.fast.copy()
    problems: dict[int, Finding] = {}
    for i in np.flatnonzero(~col.fast).tolist():
        value, problem = read_fact(snapshots[i], col.name, max_age)
        if problem is not None:
            problems[i] = problem
        elif value is not None:
            known[i] = True
            col.checked[i] = value
            col.values[i] = value
    return known, problems
