"""Counts by name, in the order a summary shows them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

Counts = tuple[tuple[str, int], ...]


def in_order(counts: Counter[str], names: Iterable[str]) -> Counts:
    """Every name in `names` (zero when absent), then any other name seen, sorted."""
    known = list(names)
    extra = sorted(k for k in counts if k not in known)
    return tuple((k, int(counts.get(k, 0))) for k in [*known, *extra])


def by_count(counts: Counter[str]) -> Counts:
    return tuple(sorted(((k, int(v)) for k, v in counts.items()), key=lambda kv: (-kv[1], kv[0])))
