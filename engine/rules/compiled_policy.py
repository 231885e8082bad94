"""Any policy's rules over a flat set of facts: checked first, then evaluated in durable-rules.

The safety evaluator has its own path for snapshots; rotation triggers and approval rules read
facts FuggerBot derives itself (weights, order sizes), which are checked against the catalogue
all the same, so a NaN weight or a missing price can never pass as "no trigger".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.catalogue import CATALOGUE
from engine.facts import quick_check, type_problem
from engine.policy.model import Policy, Rule, Scalar
from engine.rules.durable_backend import CompiledRules, EngineError, RuleSpec


@dataclass(frozen=True)
class FactProblem:
    fact: str
    problem: str  # missing | invalid | engine-error
    detail: str

    @property
    def rule_name(self) -> str:
        return f"fact-{self.problem}:{self.fact}" if self.problem != "engine-error" else \
            "engine-error"


@dataclass(frozen=True)
class Outcome:
    """Which rules of one policy fired, on which values, and which facts could not be used."""

    policy: Policy
    fired: tuple[Rule, ...]
    problems: tuple[FactProblem, ...]
    observed: Mapping[str, Scalar]

    @property
    def failed_closed(self) -> bool:
        return bool(self.problems)

    @property
    def deciding(self) -> str | None:
        """The id that answers "why": the first fact problem, else the first fired rule."""
        if self.problems:
            return self.problems[0].rule_name
        return self.fired[0].id if self.fired else None

    @property
    def deciding_source(self) -> str | None:
        if self.problems:
            return self.policy.rules[0].source if self.policy.rules else None
        return self.fired[0].source if self.fired else None


class CompiledPolicy:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._rules = CompiledRules(policy.name, [RuleSpec(r.id, r.when) for r in policy.rules])
        self.facts = self._rules.facts
        self._checks = tuple((name, quick_check(CATALOGUE[name])) for name in self.facts)

    def evaluate(self, facts: Mapping[str, Any]) -> Outcome:
        values: dict[str, Scalar] = {}
        problems: list[FactProblem] = []
        for name, quick in self._checks:
            value: Any = facts.get(name)
            if quick(value):
                values[name] = value
                continue
            spec = CATALOGUE[name]
            if name not in facts or facts[name] is None:
                problems.append(FactProblem(name, "missing", f"{name} is not known"))
                continue
            why = type_problem(spec, facts[name])
            if why:
                problems.append(FactProblem(name, "invalid", why))
                continue
            values[name] = facts[name]
        try:
            ids = self._rules.fired(values)
        except EngineError as e:
            problems.append(FactProblem("*", "engine-error", str(e)))
            ids = frozenset()
        fired = tuple(r for r in self.policy.rules if r.id in ids) if ids else ()
        return Outcome(self.policy, fired, tuple(problems), values)

    def close(self) -> None:
        self._rules.close()
