"""Shadow evaluation: a candidate policy set decides beside the active one, and only the
difference is reported. Nothing here acts on the candidate's decision.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from engine.decision import Decision
from engine.evaluator import SafetyEvaluator

#: The transition a candidate that failed to decide is counted under.
CANDIDATE_ERROR = "candidate-error"


@dataclass(frozen=True)
class ShadowDifference:
    """One snapshot on which the candidate decides differently from the active set."""

    symbol: str | None
    ts: str | None
    active_action: str
    active_rule: str | None
    candidate_action: str
    candidate_rule: str | None
    #: Why the candidate could not decide, when it could not.
    error: str = ""
    where: str = ""

    @property
    def transition(self) -> str:
        if self.error:
            return CANDIDATE_ERROR
        return f"{self.active_action} -> {self.candidate_action}"

    def text(self) -> str:
        old = f"{self.active_action} ({self.active_rule or '-'})"
        new = (f"error: {self.error}" if self.error
               else f"{self.candidate_action} ({self.candidate_rule or '-'})")
        return f"{self.symbol or '?'} {self.ts or '?'}: {old} -> {new}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "symbol": self.symbol, "ts": self.ts,
            "old": {"action": self.active_action, "rule": self.active_rule},
            "new": {"action": self.candidate_action, "rule": self.candidate_rule},
            "transition": self.transition,
        }
        if self.where:
            out["where"] = self.where
        if self.error:
            out["error"] = self.error
        return out


def difference(active: Decision, candidate: Decision, where: str = "") -> ShadowDifference | None:
    """The difference between two decisions on one snapshot; None when the action and the
    deciding rule are the same."""
    a_rule = active.rule
    c_rule = candidate.rule
    if active.action is candidate.action and a_rule == c_rule:
        return None
    return ShadowDifference(active.symbol, active.ts, active.action.value, a_rule,
                            candidate.action.value, c_rule, where=where)


class ShadowComparison:
    """A candidate evaluator run beside the active one; its decisions are only compared."""

    def __init__(self, active: SafetyEvaluator, candidate: SafetyEvaluator) -> None:
        self.active = active
        self.candidate = candidate

    def compare(self, snapshot: object, *, active_decision: Decision | None = None,
                where: str = "") -> ShadowDifference | None:
        """Decide `snapshot` under both sets (reusing `active_decision` when the caller has
        already decided it) and return how they differ, or None."""
        active = active_decision if active_decision is not None else \
            self.active.decide(snapshot)
        try:
            candidate = self.candidate.decide(snapshot)
        except Exception as e:  # a broken candidate must never disturb the active path
            rule = active.rule
            return ShadowDifference(active.symbol, active.ts, active.action.value, rule,
                                    "-", None, error=f"{type(e).__name__}: {e}", where=where)
        return difference(active, candidate, where)


class ShadowSummary:
    """Counts of compared snapshots and of differences by transition, with the first examples."""

    def __init__(self, examples: int = 5) -> None:
        self.max_examples = max(0, examples)
        self.compared = 0
        self.transitions: Counter[str] = Counter()
        self.examples: list[ShadowDifference] = []

    def add(self, diff: ShadowDifference | None) -> None:
        self.compared += 1
        if diff is None:
            return
        self.transitions[diff.transition] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(diff)

    @property
    def changed(self) -> int:
        return sum(self.transitions.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "compared": self.compared,
            "changed": self.changed,
            "transitions": dict(sorted(self.transitions.items())),
            "examples": [d.to_json() for d in self.examples],
        }
