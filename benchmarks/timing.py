"""Timing contenders fairly on a shared, noisy machine.

Each repeat walks the snapshots in chunks; in every chunk each contender runs the whole
chunk, in an order that rotates from chunk to chunk, so a pause of the machine lands on all
of them alike. Every timed call is kept (no best-of-n), and every result is checked against
the reference contender's result for the same snapshot.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Check = Callable[[str, Any, Any, Any], str | None]


@dataclass
class Runs:
    """Per contender, per repeat, the latency of every call in microseconds; and every
    disagreement found."""

    samples: dict[str, list[list[float]]]
    checked: int = 0
    disagreements: list[str] = field(default_factory=list)


def interleaved(contenders: Mapping[str, Callable[[Any], Any]], items: Sequence[Any], *,
                repeats: int, chunk: int, check: Check) -> Runs:
    """Time every contender on every item `repeats` times. The first contender is the
    reference: `check(name, item, result, reference_result)` says why a result disagrees."""
    names = list(contenders)
    runs = Runs({n: [[] for _ in range(repeats)] for n in names})
    clock = time.perf_counter_ns
    turn = 0
    for rep in range(repeats):
        for start in range(0, len(items), chunk):
            part = items[start:start + chunk]
            results: dict[str, list[Any]] = {}
            order = names[turn % len(names):] + names[:turn % len(names)]
            turn += 1
            for name in order:
                fn, out, got = contenders[name], runs.samples[name][rep], []
                for item in part:
                    t0 = clock()
                    r = fn(item)
                    out.append((clock() - t0) / 1000)
                    got.append(r)
                results[name] = got
            reference = results[names[0]]
            for name in names[1:]:
                for item, r, ref in zip(part, results[name], reference, strict=True):
                    why = check(name, item, r, ref)
                    if why is not None and len(runs.disagreements) < 20:
                        runs.disagreements.append(why)
                    runs.checked += 1
    return runs


def summary(per_repeat: Sequence[Sequence[float]]) -> dict[str, Any]:
    """Median and p99 over every call, and the spread of the median across repeats."""
    every = sorted(x for rep in per_repeat for x in rep)
    medians = [statistics.median(rep) for rep in per_repeat if rep]
    return {"median_us": round(statistics.median(every), 2), "p99_us": round(p99(every), 2),
            "n": len(every),
            "median_us_by_repeat": [round(m, 2) for m in medians]}


def p99(ordered: Sequence[float]) -> float:
    """Nearest-rank 99th percentile of sorted samples."""
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def ratio(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> dict[str, Any]:
    """a / b from the medians of each repeat: the median ratio and its range."""
    ratios = sorted(statistics.median(x) / statistics.median(y) for x, y in zip(a, b,
                                                                                 strict=True))
    return {"median": round(statistics.median(ratios), 2),
            "range": [round(ratios[0], 2), round(ratios[-1], 2)]}


HEADER = f"{'path':26} {'median us':>10} {'p99 us':>10}  {'median by repeat':>24}"


def print_latencies(sec: Mapping[str, Any], paths: Sequence[str],
                    ratios: Sequence[tuple[str, str]]) -> None:
    """One row per path of a section (median, p99, median of each repeat), then its ratios
    (label, key) with their range across repeats, then its agreement."""
    print(HEADER)
    for name in paths:
        st = sec[name]
        spread = ", ".join(f"{x:g}" for x in st["median_us_by_repeat"])
        print(f"{name:26} {st['median_us']:>10} {st['p99_us']:>10}  {spread:>24}")
    for label, key in ratios:
        r = sec[key]
        print(f"{label:26} {r['median']:>9}x  (repeats {r['range'][0]}..{r['range'][1]})")
    ag = sec["agreement"]
    print(f"{'agreement':26} {ag['checked']} results checked, "
          f"{len(ag['disagreements'])} disagreements")
