"""Decisions-only work spread over a Dask cluster: `eval` and `diff --facts`.

The input is read as a stream in rounds of ROUND snapshots; each round is partitioned by
symbol (`engine.scale.partition`), one partition per worker, and the results are put back in
input order before anything is recorded or counted, so the output is the single-process
output (apart from decision ids and stamps). Each worker compiles the policy set from its
text once and keeps it for later rounds.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar

from engine.clock import Clock
from engine.decision import Decision
from engine.evaluator import SafetyEvaluator
from engine.policy.loader import policy_set_from_texts
from engine.policy.model import PolicySet
from engine.scale.cluster import sources
from engine.scale.partition import by_symbol, in_order
from engine.shadow import ShadowDifference, ShadowSummary
from engine.tooling.diff import DiffReplay

if TYPE_CHECKING:
    from distributed import Client

T = TypeVar("T")
Sources = tuple[tuple[str, str], ...]
#: Snapshots per round: what the caller holds at once, whatever the input's length.
ROUND = 50_000

# --- on a worker ------------------------------------------------------------------------

#: What this worker process compiled, by the policy texts: compiled once, kept for the next
#: rounds (a few sets at most: eval has one, diff two).
_compiled: dict[tuple[str, Sources, Sources], SafetyEvaluator | DiffReplay] = {}


def _cached(key: tuple[str, Sources, Sources],
            make: Callable[[], SafetyEvaluator | DiffReplay]) -> SafetyEvaluator | DiffReplay:
    found = _compiled.get(key)
    if found is None:
        if len(_compiled) >= 4:
            _compiled.pop(next(iter(_compiled))).close()
        found = _compiled[key] = make()
    return found


def decide_part(srcs: Sources, clock: Clock, raws: list[object]) -> list[Decision]:
    """Decide one partition in durable-rules."""
    evaluator = _cached(("eval", srcs, ()),
                        lambda: SafetyEvaluator(policy_set_from_texts(srcs)))
    assert isinstance(evaluator, SafetyEvaluator)
    return [evaluator.decide(raw, clock=clock) for raw in raws]


def diff_part(old: Sources, new: Sources, items: list[tuple[str, object]],
              ) -> list[ShadowDifference | None]:
    """How each snapshot of one partition would change (see DiffReplay)."""
    differ = _cached(("diff", old, new),
                     lambda: DiffReplay(policy_set_from_texts(old), policy_set_from_texts(new)))
    assert isinstance(differ, DiffReplay)
    return differ.differences(items)


# --- on the caller ----------------------------------------------------------------------


def workers_of(client: Client) -> int:
    return max(1, len(client.scheduler_info().get("workers", {})))


def decide_spread(client: Client, ps: PolicySet, items: Iterable[T],
                  raw_of: Callable[[T], object], clock: Clock) -> Iterator[tuple[Decision, T]]:
    """(decision, item) for every item, in input order, decided on the cluster. `clock` is
    fixed at one instant for the whole input (on the wall clock, the instant it started), so
    every worker ages facts against the same now."""
    srcs = sources(ps)
    fixed = Clock(clock.kind, clock.now()) if clock.wall and clock.at is None else clock
    parts_wanted = workers_of(client)
    it = iter(items)
    while chunk := list(itertools.islice(it, ROUND)):
        raws = [raw_of(x) for x in chunk]
        parts = by_symbol(raws, parts_wanted)
        futures = client.map(decide_part, [srcs] * len(parts), [fixed] * len(parts),
                             [[raws[i] for i in p] for p in parts], pure=False)
        decisions = in_order(len(chunk), parts, client.gather(futures))
        yield from zip(decisions, chunk, strict=True)


def diff_spread(client: Client, old: PolicySet, new: PolicySet,
                items: Iterable[tuple[str, object]], *, examples: int = 5) -> ShadowSummary:
    """`engine.tooling.diff.replay` on the cluster: the same summary, examples in input
    order."""
    a, b = sources(old), sources(new)
    parts_wanted = workers_of(client)
    summary = ShadowSummary(examples)
    it = iter(items)
    while chunk := list(itertools.islice(it, ROUND)):
        parts = by_symbol([raw for _, raw in chunk], parts_wanted)
        futures = client.map(diff_part, [a] * len(parts), [b] * len(parts),
                             [[chunk[i] for i in p] for p in parts], pure=False)
        for diff in in_order(len(chunk), parts, client.gather(futures)):
            summary.add(diff)
    return summary
