"""The vectorised backend: the safety policies of a set as numpy expressions over the fact
columns of many snapshots at once.

It reads the same policy model, the same catalogue checks (`engine.backends.columns`), the
same action order (`engine.actions`) and assembles decisions with the evaluator's
`DecisionAssembler`, so a decision names the same action, deciding rule, fired rules and
fail-closed findings as durable-rules, which stays the engine of record: `engine.backends.
agreement` checks the two against each other. It decides on the snapshot clock only (replays,
`diff`); live commands age facts against the wall clock through durable-rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from engine.actions import Action
from engine.backends.columns import Column, Mask, column, usable
from engine.backends.conditions import holds
from engine.clock import SNAPSHOT, Clock
from engine.decision import Decision, FactFinding, FiredRule
from engine.evaluator import SAFETY, DecisionAssembler, fact_finding
from engine.facts import Snapshot, parse_snapshot
from engine.policy.model import Policy, PolicySet, Rule, Scalar


@dataclass(frozen=True)
class Verdict:
    """What two backends must agree on for one snapshot."""

    action: Action
    rule: str | None
    fired: frozenset[str]
    #: The fail-closed rules of the findings, in the order the decision lists them.
    findings: tuple[str, ...]

    @classmethod
    def of(cls, d: Decision) -> Verdict:
        return cls(d.action, d.rule, frozenset(f.rule for f in d.fired),
                   tuple(f.rule for f in d.findings))

    def text(self) -> str:
        fired = ", ".join(sorted(self.fired)) or "-"
        found = ", ".join(self.findings) or "-"
        return (f"{self.action.value} by {self.rule or '-'} (fired: {fired}; findings: "
                f"{found})")


@dataclass(frozen=True)
class _Rule:
    rule: Rule
    policy: Policy
    action: Action


class VectorBackend:
    """The safety policies of one set, ready to decide batches of snapshots."""

    def __init__(self, policy_set: PolicySet) -> None:
        self.policy_set = policy_set
        self.assembler = DecisionAssembler(policy_set)
        self.policies = policy_set.of_kind(SAFETY)
        #: Every rule in the order a decision lists fired rules: policy order, then rule order.
        self.rules = tuple(_Rule(r, p, Action(r.action)) for p in self.policies for r in p.rules)
        self.facts = tuple(dict.fromkeys(f for x in self.rules for f in x.rule.facts))
        self._readers = {p.name: _readers(p) for p in self.policies}

    def evaluate(self, raws: Sequence[object]) -> Batch:
        """Decide every snapshot of `raws` (on the snapshot clock) as one batch."""
        snapshots = [parse_snapshot(r) for r in raws]
        n = len(snapshots)
        cols = {f: column(f, snapshots) for f in self.facts}
        values = {f: c.values for f, c in cols.items()}
        fired = np.zeros((len(self.rules), n), dtype=bool)
        findings: dict[int, list[FactFinding]] = {}
        for i, s in enumerate(snapshots):
            if s.findings:
                findings[i] = self.assembler.envelope_findings(s)
        known_by_policy: list[dict[str, Mask]] = []
        k = 0
        for p in self.policies:
            known: dict[str, Mask] = {}
            fail = Action(p.fail_closed)
            readers = self._readers[p.name]
            for f in dict.fromkeys(x for r in p.rules for x in r.facts):
                known[f], problems = usable(cols[f], snapshots, p.max_fact_age)
                for i, problem in problems.items():
                    findings.setdefault(i, []).append(
                        fact_finding(problem, p, fail, readers.get(f, ())))
            known_by_policy.append(known)
            for r in p.rules:
                fired[k] = holds(r.when, values, known, n)
                k += 1
        return Batch(self, snapshots, cols, fired, findings)


def _readers(p: Policy) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for r in p.rules:
        for f in r.facts:
            out.setdefault(f, []).append(r.id)
    return {k: tuple(v) for k, v in out.items()}


class Batch:
    """The decisions of one batch, as columns: the action of every snapshot by the action
    order, the deciding rule and the fired rules; findings are kept per snapshot (they are
    rare)."""

    def __init__(self, backend: VectorBackend, snapshots: list[Snapshot],
                 cols: dict[str, Column], fired: npt.NDArray[np.bool_],
                 findings: dict[int, list[FactFinding]]) -> None:
        self.backend = backend
        self.snapshots = snapshots
        self.cols = cols
        self.fired = fired
        self.findings = findings
        n = len(snapshots)
        rules = backend.rules
        severity = np.array([x.action.severity for x in rules], dtype=np.int8)
        sev = np.zeros(n, dtype=np.int8)
        for k in range(len(rules)):
            np.maximum(sev, np.where(fired[k], severity[k], 0).astype(np.int8), out=sev)
        for i, found in findings.items():
            sev[i] = max(int(sev[i]), *(f.action.severity for f in found))
        # The deciding rule: the first fired rule, in policy order, of the decision's action;
        # a snapshot with findings names its first finding of that action before any rule.
        deciding = np.full(n, -1, dtype=np.int32)
        for k in range(len(rules)):
            deciding[(deciding < 0) & fired[k] & (sev == severity[k])] = k
        self.severity = sev
        self.deciding = deciding
        by_severity = {a.severity: a for a in Action}
        self._actions = by_severity

    def __len__(self) -> int:
        return len(self.snapshots)

    def action(self, i: int) -> Action:
        return self._actions[int(self.severity[i])]

    def verdict(self, i: int) -> Verdict:
        action = self.action(i)
        rules = self.backend.rules
        found = self.findings.get(i, ())
        rule: str | None = None
        if action is not Action.ALLOW:
            rule = next((f.rule for f in found if f.action is action), None)
            if rule is None:
                rule = rules[int(self.deciding[i])].rule.id
        fired = frozenset(rules[k].rule.id for k in np.flatnonzero(self.fired[:, i]).tolist())
        return Verdict(action, rule, fired, tuple(f.rule for f in found))

    def decision(self, i: int, clock: Clock = SNAPSHOT) -> Decision:
        """The full Decision of snapshot i, assembled exactly as the evaluator assembles its
        own; on the snapshot clock only."""
        if clock.wall:
            raise ValueError("the vectorised backend decides on the snapshot clock only")
        fired: list[FiredRule] = []
        for k in np.flatnonzero(self.fired[:, i]).tolist():
            x = self.backend.rules[k]
            observed: dict[str, Scalar] = {}
            for f in x.rule.facts:
                if f not in self._unusable(i, x.policy.name):
                    observed[f] = self.cols[f].value(i)
            fired.append(FiredRule(x.rule.id, x.policy.name, x.policy.version, x.action,
                                   x.rule.source, observed))
        return self.backend.assembler.assemble(
            self.snapshots[i], list(self.findings.get(i, ())), fired, clock, None)

    def _unusable(self, i: int, policy: str) -> set[str]:
        return {f.fact for f in self.findings.get(i, ()) if f.policy == policy}
