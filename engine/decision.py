"""The decision record: what was decided for one snapshot, and exactly why."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.actions import Action
from engine.canonical import Encoded, encoded
from engine.facts import facts_hash
from engine.policy.model import Scalar


@dataclass(frozen=True)
class DecidingRule:
    policy: str
    version: str
    rule: str
    source: str

    def to_json(self) -> dict[str, str]:
        return {"policy": self.policy, "version": self.version, "rule": self.rule,
                "source": self.source}


@dataclass(frozen=True)
class FiredRule:
    rule: str
    policy: str
    version: str
    action: Action
    source: str
    observed: Mapping[str, Scalar]

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "policy": self.policy, "version": self.version,
                "action": self.action.value, "source": self.source,
                "observed": dict(self.observed)}


@dataclass(frozen=True)
class FactFinding:
    """A fact that could not be used, the fail-closed rule it raised and the rules that read it."""

    fact: str
    problem: str
    detail: str
    rule: str
    action: Action
    policy: str
    needed_by: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"fact": self.fact, "problem": self.problem, "detail": self.detail,
                "rule": self.rule, "action": self.action.value, "policy": self.policy,
                "needed_by": list(self.needed_by)}


@dataclass(frozen=True)
class Decision:
    decision_id: str
    ts: str | None
    symbol: str | None
    action: Action
    deciding_rule: DecidingRule | None
    fired: tuple[FiredRule, ...]
    findings: tuple[FactFinding, ...]
    policy_set_hash: str
    policy_versions: Mapping[str, str]
    #: The snapshot as received; its hash is computed when the decision is serialised.
    facts: Mapping[str, Any]
    decided_at: str
    #: The clock the decision was made on: wall (live) or snapshot (replay).
    clock: str = "snapshot"

    @functools.cached_property
    def _encoded_facts(self) -> Encoded | None:
        return encoded(self.facts)

    @functools.cached_property
    def facts_hash(self) -> str:
        return facts_hash(self.facts, self._encoded_facts)

    def record_facts(self) -> Mapping[str, Any]:
        """The facts as a decision's audit record holds them: a copy, carrying the canonical
        text its hash was made from, so the record does not encode them again."""
        return self._encoded_facts if self._encoded_facts is not None else dict(self.facts)

    @property
    def rule(self) -> str | None:
        """The id of the deciding rule (or fail-closed finding); None when allowed."""
        return self.deciding_rule.rule if self.deciding_rule else None

    @property
    def verdict(self) -> tuple[Action, str | None]:
        """What the gate and the rotation read: the action and the rule behind it."""
        return self.action, self.rule

    @property
    def all_clear(self) -> bool:
        return self.action is Action.ALLOW

    def to_json(self) -> dict[str, Any]:
        return {
            "decision_id": self.decision_id,
            "ts": self.ts,
            "symbol": self.symbol,
            "action": self.action.value,
            "all_clear": self.all_clear,
            "deciding_rule": self.deciding_rule.to_json() if self.deciding_rule else None,
            "fired": [f.to_json() for f in self.fired],
            "findings": [f.to_json() for f in self.findings],
            "policy_set": {"hash": self.policy_set_hash,
                           "policies": dict(self.policy_versions)},
            "facts_hash": self.facts_hash,
            "decided_at": self.decided_at,
            "clock": self.clock,
        }


def governing(decisions: Iterable[Decision]) -> dict[str, Decision]:
    """The decision that governs each symbol of one cycle: the most restrictive of its
    snapshots' decisions (the first of them at equal restriction). Two snapshots of one symbol
    in one cycle never let the clear one stand for the halting one. A decision without a
    symbol governs only itself, under the key `?N`."""
    out: dict[str, Decision] = {}
    for n, d in enumerate(decisions):
        key = d.symbol if d.symbol is not None else f"?{n}"
        held = out.get(key)
        if held is None or d.action.severity > held.action.severity:
            out[key] = d
    return out
