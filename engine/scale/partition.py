"""Partitioning by symbol: every snapshot of one symbol goes to the same partition, so a
worker sees a symbol's history whole; results are put back in input order."""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
_MISSING = object()


def by_symbol(items: Sequence[object], parts: int) -> list[list[int]]:
    """The indices of `items` (snapshots) in each of `parts` partitions, by a stable hash of
    their symbol (the same on every machine, unlike Python's `hash`); a snapshot without a
    usable symbol goes to the first. Empty partitions are dropped."""
    out: list[list[int]] = [[] for _ in range(max(1, parts))]
    for i, raw in enumerate(items):
        symbol = raw.get("symbol") if isinstance(raw, Mapping) else None
        key = zlib.crc32(symbol.encode("utf-8", "surrogatepass")) if isinstance(symbol, str) \
            else 0
        out[key % len(out)].append(i)
    return [p for p in out if p]


def in_order(n: int, parts: Sequence[Sequence[int]],
             results: Sequence[Sequence[T]]) -> list[T]:
    """The results of each partition put back at their items' places."""
    merged: list[Any] = [_MISSING] * n
    for indices, part in zip(parts, results, strict=True):
        for i, r in zip(indices, part, strict=True):
            merged[i] = r
    missing = sum(1 for r in merged if r is _MISSING)
    if missing:
        raise AssertionError(f"{missing} result(s) missing after merging partitions")
    return merged
