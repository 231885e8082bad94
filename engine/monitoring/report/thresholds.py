"""The safety thresholds a report draws: those of the policy set a run started under, as
recorded in the audit store, or the shipped policy's when none was recorded."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from engine.audit.store import AuditStore

Op = Literal[">=", ">", "<=", "<"]


@dataclass(frozen=True)
class Threshold:
    """A safety fact triggers `action` when `fact op value` holds."""

    op: Op
    value: float
    action: str

    def __post_init__(self) -> None:
        if self.op not in (">=", ">", "<=", "<"):
            raise ValueError(f"threshold operator must be >=, >, <= or <, got {self.op!r}")
        if not math.isfinite(self.value):
            raise ValueError(f"threshold value must be a finite number, got {self.value!r}")

    @property
    def above(self) -> bool:
        return self.op.startswith(">")

    def text(self) -> str:
        return f"{self.action} when {self.op} {self.value:g}"


#: The limits of the default safety policy (policies/safety.yaml).
DEFAULT_THRESHOLDS: Mapping[str, Threshold] = {
    "drift_score": Threshold(">=", 0.8, "halt"),
    "volatility": Threshold(">=", 0.35, "flatten"),
    "coherence": Threshold("<=", 0.5, "block_new"),
    "frs": Threshold("<", 0.4, "wait_confirmation"),
    "meta_reliability": Threshold("<", 0.4, "wait_confirmation"),
}
FACT_LABELS: Mapping[str, str] = {
    "drift_score": "drift score",
    "volatility": "volatility (annualised)",
    "coherence": "coherence",
    "frs": "FRS",
    "meta_reliability": "meta reliability",
}
def recorded_thresholds(store: AuditStore, policy_hash: str | None) -> Mapping[str, Threshold]:
    """The threshold of each safety fact in the policy set recorded under `policy_hash`: the
    single comparison of a rule (or of each branch of an `any`) on that fact. A fact the
    recorded rules compare in any other way keeps no line rather than a wrong one; without
    a recorded set, the default policy's thresholds are drawn."""
    from engine.policy.loader import policy_set_from_texts
    from engine.policy.model import AnyOf, Leaf
    from engine.policy.problems import PolicyError

    activation = store.activation(policy_hash) if policy_hash else None
    if activation is None:
        return DEFAULT_THRESHOLDS
    try:
        policy_set = policy_set_from_texts([(p["path"], p["text"])
                                            for p in activation.body.get("policies", [])])
    except (PolicyError, KeyError, TypeError):
        return DEFAULT_THRESHOLDS
    found: dict[str, list[Threshold]] = {}
    for policy in policy_set.of_kind("SafetyPolicy"):
        for rule in policy.rules:
            leaves = rule.when.items if isinstance(rule.when, AnyOf) else (rule.when,)
            for leaf in leaves:
                if isinstance(leaf, Leaf) and leaf.op in (">=", ">", "<=", "<") and \
                        isinstance(leaf.value, (int, float)) and \
                        not isinstance(leaf.value, bool) and leaf.fact in FACT_LABELS:
                    found.setdefault(leaf.fact, []).append(
                        Threshold(leaf.op, float(leaf.value), rule.action))
    return {fact: ts[0] for fact, ts in found.items() if len(ts) == 1}
