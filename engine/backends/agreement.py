"""durable-rules (the engine of record) against the vectorised backend, snapshot by snapshot.

Both decide every snapshot; a snapshot agrees when the action, the deciding rule, the set of
fired rules and the fail-closed findings are the same. Each backend's time is measured on its
own (the vectorised one per batch, durable-rules per snapshot), so the report can say how many
snapshots a second each decides.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from engine.backends.vector import Batch, VectorBackend, Verdict
from engine.decision import Decision
from engine.evaluator import SafetyEvaluator
from engine.policy.model import PolicySet

#: Snapshots decided per vectorised batch: large enough to pay for numpy's per-call cost,
#: small enough that memory stays flat whatever the length of the input.
BATCH = 8192


@dataclass(frozen=True)
class Disagreement:
    """The first snapshot the backends decided differently."""

    where: str
    symbol: str | None
    ts: str | None
    durable: Verdict
    vector: Verdict

    def text(self) -> str:
        return (f"{self.where}: {self.symbol or '?'} {self.ts or '?'}: durable-rules "
                f"{self.durable.text()}; vector {self.vector.text()}")


class BackendDisagreement(Exception):
    """The backends disagreed: no result of the vectorised backend may be reported."""

    def __init__(self, first: Disagreement) -> None:
        super().__init__(f"the vectorised backend disagrees with durable-rules at "
                         f"{first.text()}")
        self.first = first

    def __reduce__(self) -> tuple[type[BackendDisagreement], tuple[Disagreement]]:
        # Raised on a Dask worker, it crosses to the caller whole.
        return (BackendDisagreement, (self.first,))


@dataclass
class Agreement:
    """Counts and times of one comparison of the two backends."""

    compared: int = 0
    agreed: int = 0
    durable_seconds: float = 0.0
    vector_seconds: float = 0.0
    first: Disagreement | None = None

    @property
    def disagreed(self) -> int:
        return self.compared - self.agreed

    @staticmethod
    def rate(n: int, seconds: float) -> float:
        return n / seconds if seconds > 0 else 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "compared": self.compared, "agreed": self.agreed, "disagreed": self.disagreed,
            "durable": {"seconds": round(self.durable_seconds, 4),
                        "snapshots_per_s": round(self.rate(self.compared,
                                                           self.durable_seconds), 1)},
            "vector": {"seconds": round(self.vector_seconds, 4),
                       "snapshots_per_s": round(self.rate(self.compared,
                                                          self.vector_seconds), 1)},
            "first_disagreement": None if self.first is None else {
                "where": self.first.where, "symbol": self.first.symbol, "ts": self.first.ts,
                "durable": self.first.durable.text(), "vector": self.first.vector.text()},
        }


class CheckedBackend:
    """The vectorised backend with durable-rules deciding beside it: every decision it hands
    out has been checked; a disagreement raises BackendDisagreement before any decision of
    its batch is handed out."""

    def __init__(self, policy_set: PolicySet, *, durable: SafetyEvaluator | None = None,
                 ) -> None:
        self.vector = VectorBackend(policy_set)
        self._own = durable is None
        self.durable = durable if durable is not None else SafetyEvaluator(policy_set)
        self.agreement = Agreement()

    def decide(self, items: Iterable[tuple[str, object]],
               ) -> Iterator[tuple[Batch, list[Decision]]]:
        """Every (where, snapshot) decided in batches, in input order: the vectorised batch
        and durable-rules' decisions beside it, each checked."""
        it = iter(items)
        while chunk := list(itertools.islice(it, BATCH)):
            yield self.check(chunk)

    def check(self, chunk: Sequence[tuple[str, object]]) -> tuple[Batch, list[Decision]]:
        batch, decisions, first = self.compare(chunk)
        if first is not None:
            raise BackendDisagreement(first)
        return batch, decisions

    def compare(self, chunk: Sequence[tuple[str, object]],
                ) -> tuple[Batch, list[Decision], Disagreement | None]:
        """Both backends on one chunk, counted; the chunk's first disagreement, if any."""
        a = self.agreement
        t0 = time.perf_counter()
        batch = self.vector.evaluate([raw for _, raw in chunk])
        a.vector_seconds += time.perf_counter() - t0
        decisions: list[Decision] = []
        first: Disagreement | None = None
        decide = self.durable.decide
        for i, (where, raw) in enumerate(chunk):
            t0 = time.perf_counter()
            decision = decide(raw)
            a.durable_seconds += time.perf_counter() - t0
            decisions.append(decision)
            a.compared += 1
            durable, vector = Verdict.of(decision), batch.verdict(i)
            if durable == vector:
                a.agreed += 1
            elif first is None:
                first = Disagreement(where, decision.symbol, decision.ts, durable, vector)
                if a.first is None:
                    a.first = first
        return batch, decisions, first

    def close(self) -> None:
        if self._own:
            self.durable.close()


def verify(policy_set: PolicySet, items: Iterable[tuple[str, object]]) -> Agreement:
    """Decide every (where, snapshot) with both backends and count agreement; unlike
    `CheckedBackend.decide` it goes on after a disagreement, so the count is complete."""
    checked = CheckedBackend(policy_set)
    it = iter(items)
    try:
        while chunk := list(itertools.islice(it, BATCH)):
            checked.compare(chunk)
    finally:
        checked.close()
    return checked.agreement
