"""Shadow evaluation inside a long-running mode: every snapshot the active set decides is
decided again by a candidate set; each difference is recorded (kind `shadow_difference`)
and counted, never acted on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.audit.store import AuditStore
from engine.cycle import CycleResult
from engine.evaluator import SafetyEvaluator
from engine.policy.model import PolicySet
from engine.shadow import ShadowComparison, ShadowSummary

KIND = "shadow_difference"


class ShadowRun:
    def __init__(self, candidate: PolicySet, *, examples: int = 5) -> None:
        self.candidate_set = candidate
        self.candidate = SafetyEvaluator(candidate)
        self.summary = ShadowSummary(examples)

    def observe(self, store: AuditStore, run_id: str,
                snapshots: Sequence[Mapping[str, Any]], result: CycleResult,
                live: SafetyEvaluator) -> None:
        """Compare the cycle's decisions, made by `live` (the set in force for this cycle,
        which a reload may have changed), with the candidate's."""
        by_symbol: dict[object, list[Mapping[str, Any]]] = {}
        for s in snapshots:
            by_symbol.setdefault(s.get("symbol"), []).append(s)
        comparison = ShadowComparison(live, self.candidate)
        records = []
        for symbol, decision in sorted(result.decisions.items()):
            own = by_symbol.get(symbol, [])
            for snapshot in own:
                # The cycle's decision stands for its symbol's one snapshot; where a symbol
                # had several, each is decided again under the live set and compared.
                diff = comparison.compare(snapshot,
                                          active_decision=decision if len(own) == 1 else None)
                self.summary.add(diff)
                if diff is None:
                    continue
                records.append((KIND, decision.decision_id, {
                    "run_id": run_id, "ts": result.ts, "candidate": self.candidate_set.hash,
                    "active": live.policy_set.hash,
                    "decision_id": decision.decision_id, **diff.to_json(),
                    "summary": f"shadow: {diff.text()}"}))
        if records:
            store.append_many(records)

    def close(self) -> None:
        self.candidate.close()
