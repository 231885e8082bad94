"""From a snapshot to a Decision under the safety policies of a policy set."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from engine.actions import Action, most_restrictive
from engine.catalogue import CATALOGUE
from engine.clock import DEFAULT_MAX_CLOCK_SKEW, SNAPSHOT, Clock
from engine.decision import DecidingRule, Decision, FactFinding, FiredRule
from engine.facts import Finding, Snapshot, clock_findings, parse_snapshot, read_fact
from engine.ids import new_id
from engine.policy.model import Policy, PolicySet, Rule, Scalar
from engine.rules.durable_backend import CompiledRules, EngineError, RuleSpec
from engine.timeutil import stamp

SAFETY = "SafetyPolicy"


@dataclass(frozen=True)
class _RuleInfo:
    """What a fired rule's record needs, worked out once per compilation."""

    id: str
    action: Action
    source: str
    facts: tuple[str, ...]


@dataclass(frozen=True)
class _Compiled:
    policy: Policy
    rules: CompiledRules
    by_id: Mapping[str, Rule]
    facts: tuple[str, ...]
    readers: Mapping[str, tuple[str, ...]]
    fail_closed: Action
    #: Catalogue ranges of the number facts the rules read, for the fast path of `decide`.
    bounds: Mapping[str, tuple[float, float]]
    #: The rules in policy order, so the record reads like the file.
    infos: tuple[_RuleInfo, ...]


class SafetyEvaluator:
    """Compiled safety rules of one policy set. Thread-safe: each ruleset has its own lock."""

    def __init__(self, policy_set: PolicySet) -> None:
        self.policy_set = policy_set
        # First: it refuses a set without a SafetyPolicy before anything is compiled.
        self.assembler = DecisionAssembler(policy_set)
        compiled = []
        for p in policy_set.of_kind(SAFETY):
            rules = CompiledRules(p.name, [RuleSpec(r.id, r.when) for r in p.rules])
            readers: dict[str, list[str]] = {}
            for r in p.rules:
                for f in r.facts:
                    readers.setdefault(f, []).append(r.id)
            compiled.append(_Compiled(
                policy=p, rules=rules, by_id={r.id: r for r in p.rules},
                facts=rules.facts, readers={k: tuple(v) for k, v in readers.items()},
                fail_closed=Action(p.fail_closed), bounds=fast_bounds(rules.facts),
                infos=tuple(_RuleInfo(r.id, Action(r.action), r.source, r.facts)
                            for r in p.rules)))
        self._compiled = tuple(compiled)

    @property
    def facts(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f for c in self._compiled for f in c.facts))

    def decide(self, raw: object, *, clock: Clock = SNAPSHOT) -> Decision:
        """Decide one snapshot. On the wall clock its facts are aged against now; on the
        snapshot clock (the default, for replays and policy tests), against its own ts."""
        # Facts are aged against now only on the wall clock; otherwise now is needed only for
        # the decision's stamp, which reads the time more cheaply itself.
        wall_now = clock.now() if clock.wall else None
        snapshot = parse_snapshot(raw)
        findings: list[FactFinding] = []
        fired: list[FiredRule] = []
        if snapshot.findings:
            findings.extend(self.assembler.envelope_findings(snapshot))
        for c in self._compiled:
            if wall_now is not None:
                findings.extend(fact_finding(p, c.policy, c.fail_closed, tuple(c.by_id))
                                for p in clock_findings(
                                    snapshot, wall_now, c.policy.max_fact_age,
                                    c.policy.max_clock_skew or DEFAULT_MAX_CLOCK_SKEW))
            values, problems = _read_values(c, snapshot, wall_now)
            if problems:
                findings.extend(fact_finding(p, c.policy, c.fail_closed, c.readers.get(p.fact, ()))
                                for p in problems)
            try:
                ids = c.rules.fired(values)
            except EngineError as e:
                findings.append(FactFinding(
                    fact="*", problem="engine-error", detail=str(e),
                    rule=f"engine-error:{c.policy.name}", action=c.fail_closed,
                    policy=c.policy.name, needed_by=tuple(c.by_id)))
                continue
            if ids:
                name, version = c.policy.name, c.policy.version
                # Rules reading the same facts saw the same values: one mapping serves them.
                seen: dict[tuple[str, ...], dict[str, Scalar]] = {}
                for info in c.infos:
                    if info.id in ids:
                        observed = seen.get(info.facts)
                        if observed is None:
                            observed = {k: values[k] for k in info.facts if k in values}
                            seen[info.facts] = observed
                        fired.append(FiredRule(info.id, name, version, info.action,
                                               info.source, observed))
        return self.assembler.assemble(snapshot, findings, fired, clock, wall_now)

    def checked_values(self, raw: object, *, clock: Clock = SNAPSHOT,
                       ) -> dict[str, dict[str, Scalar]]:
        """Per safety policy, the fact values that passed every check (for explanations)."""
        snapshot = parse_snapshot(raw)
        now = clock.now() if clock.wall else None
        return {c.policy.name: _read_values(c, snapshot, now)[0] for c in self._compiled}

    def close(self) -> None:
        for c in self._compiled:
            c.rules.close()


class DecisionAssembler:
    """What every backend shares once it knows which rules fired and which facts could not be
    used: the action by the action order, the deciding record and the Decision itself."""

    def __init__(self, policy_set: PolicySet) -> None:
        safety = policy_set.of_kind(SAFETY)
        if not safety:
            raise ValueError("the policy set has no SafetyPolicy: nothing could ever allow or "
                             "refuse a trade")
        self.policy_set = policy_set
        self.hash = policy_set.hash
        self.versions = policy_set.versions()
        #: What a problem with the snapshot itself (its ts, its symbol) fails closed to.
        self.default_fail = most_restrictive(Action(p.fail_closed) for p in safety)
        self.first = safety[0]

    def assemble(self, snapshot: Snapshot, findings: list[FactFinding],
                 fired: list[FiredRule], clock: Clock, wall_now: datetime | None,
                 ) -> Decision:
        """The Decision of one snapshot. `findings` come first the envelope's, then each
        policy's in policy order; `fired` in policy order then rule order."""
        if fired or findings:
            action = most_restrictive([*(f.action for f in fired),
                                       *(f.action for f in findings)])
            deciding = self._deciding(action, fired, findings)
        else:
            action, deciding = Action.ALLOW, None
        ms, decided_text = stamp(wall_now or clock.at)
        return Decision(
            decision_id=new_id(ms),
            ts=snapshot.ts_text,
            symbol=snapshot.symbol,
            action=action,
            deciding_rule=deciding,
            fired=tuple(fired),
            findings=tuple(findings),
            policy_set_hash=self.hash,
            policy_versions=self.versions,
            facts=snapshot.raw,
            decided_at=decided_text,
            clock=clock.kind.value,
        )

    def envelope_findings(self, snapshot: Snapshot) -> list[FactFinding]:
        """The findings of an unusable ts or symbol: they stop every rule."""
        return [fact_finding(f, self.first, self.default_fail, ("*",))
                for f in snapshot.findings]

    def _deciding(self, action: Action, fired: list[FiredRule],
                  findings: list[FactFinding]) -> DecidingRule | None:
        """The record that decided: at equal restriction a fact problem is named first,
        because "we could not know" is the stronger reason; then rules in policy order."""
        if action is Action.ALLOW:
            return None
        for f in findings:
            if f.action is action:
                p = self.policy_set.policy(f.policy)
                rule = p.rules[0] if p is not None else None
                reader = next((r for r in (p.rules if p else ()) if r.id in f.needed_by), rule)
                source = reader.source if reader else ""
                return DecidingRule(f.policy, self.versions.get(f.policy, ""), f.rule, source)
        for r in fired:
            if r.action is action:
                return DecidingRule(r.policy, r.version, r.rule, r.source)
        raise AssertionError("a restrictive action without a cause")  # pragma: no cover


def _read_values(c: _Compiled, snapshot: Snapshot, now: datetime | None = None,
                 ) -> tuple[dict[str, Scalar], list[Finding]]:
    """The checked values of every fact a policy's rules read, and the findings of those that
    cannot be used; dated facts are aged against `now` (None: the snapshot's ts)."""
    values: dict[str, Scalar] = {}
    problems: list[Finding] = []
    raw = snapshot.raw
    for name in c.facts:
        plain = raw.get(name)
        bounds = c.bounds.get(name)
        # Fast path for the common case, a plain float inside its catalogue range (NaN fails
        # both comparisons); everything else takes the full check.
        if bounds is not None and type(plain) is float and bounds[0] <= plain <= bounds[1]:
            values[name] = plain
            continue
        value, problem = read_fact(snapshot, name, c.policy.max_fact_age, now)
        if problem is not None:
            problems.append(problem)
        elif value is not None:
            values[name] = value
    return values, problems


def fast_bounds(facts: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    """For the number facts among `facts`, the range a plain float must lie in to skip the
    full check: the catalogue's, and finite (an unbounded fact's infinity is not a value)."""
    out: dict[str, tuple[float, float]] = {}
    for name in facts:
        spec = CATALOGUE.get(name)
        if spec is not None and spec.type == "number":
            lo = -sys.float_info.max if spec.minimum is None else spec.minimum
            hi = sys.float_info.max if spec.maximum is None else spec.maximum
            out[name] = (lo, hi)
    return out


def fact_finding(f: Finding, policy: Policy, action: Action,
             needed_by: tuple[str, ...]) -> FactFinding:
    return FactFinding(fact=f.fact, problem=f.problem, detail=f.detail, rule=f.rule_name,
                       action=action, policy=policy.name, needed_by=needed_by)


