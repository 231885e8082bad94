"""Lint a policy set: rules that cannot fire, cannot decide, contradict each other, or are
untested.

Conditions are analysed as sets of fact values (engine.tooling.value_sets).

Findings (every one is certain; what cannot be proved is not reported):
- `dead-rule` (error): the condition can never be true, e.g. `drift_score >= 0.8` and
  `drift_score < 0.5`, or `drift_score > 1` (outside the fact's range).
- `always-true` (warning): the condition holds for every valid value of its facts.
- `duplicate-condition` (error): two rules of one kind with the same condition (each implies
  the other) and different actions.
- `shadowed-rule` (warning): a rule that can never decide, because another rule of the same
  kind fires whenever it does and wins: its action is more restrictive (engine.actions orders,
  for safety and for order policies),
  or it is as restrictive and comes first. The other rule must read no fact the first does
  not, so it can never be kept from firing by a missing fact. An approval rule that asks for
  more approvers than the other is never shadowed: it raises the quorum when it fires.
- `threshold-conflict` (warning): thresholds of different parts of the set that work against
  each other:
  * a rotation eligibility bound (`min_frs`: frs >= it, `min_expected_return`:
    expected_return > it) that admits values a safety rule refuses on that fact alone: a
    symbol there is eligible for a target, but every order that would open it is held;
  * a rotation trigger on `weight_drift` alone that fires within the rotation's own `band`:
    a rebalance leaves drift up to `band`, so the trigger can fire again right after it;
  * a semi-autonomous approval rule on `order_notional` alone that covers every order the
    rotation may place (`sizing.min_trade_notional` and up): no rebalance order ever goes out
    without a person.
  * a rotation `max_position` that lets one order reach a share of equity an order rule on
    `order_notional_pct_equity` alone refuses (deny, reduce_only or halt).
- `untested-rule` (warning): no test case names the rule in `expect.rule` or `expect.fired`.
- `test-file` (error): a test case file that cannot be read.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from engine.actions import Action, OrderAction
from engine.policy.model import (
    Condition,
    Policy,
    PolicySet,
    Rule,
    facts_of,
)
from engine.policy.problems import PolicyError, Position
from engine.policy.yamlsource import parse_policy_text, position_of
from engine.tooling.cases import Case
from engine.tooling.value_sets import (
    Box,
    Domain,
    Interval,
    TooComplex,
    ValueSet,
    conjoin,
    dnf,
    full_domain,
    num_text,
)

Severity = Literal["error", "warning"]



@dataclass(frozen=True, order=True)
class Finding:
    pos: Position
    severity: Severity
    code: str
    message: str
    #: Where the other party of the finding is (the other rule, the threshold).
    related: tuple[Position, ...] = ()

    def __str__(self) -> str:
        return f"{self.pos}: {self.severity}: {self.message} [{self.code}]"

    def to_json(self) -> dict[str, Any]:
        return {"file": self.pos.file, "line": self.pos.line, "col": self.pos.col,
                "severity": self.severity, "code": self.code, "message": self.message,
                "related": [str(p) for p in self.related]}


# --- the checks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Analysed:
    """A rule with its condition and its negation as boxes (None: too large to analyse)."""

    policy: Policy
    rule: Rule
    facts: frozenset[str]
    boxes: list[Box] | None
    negated: list[Box] | None


def _analyse(policy: Policy, rule: Rule) -> _Analysed:
    def boxes(negate: bool) -> list[Box] | None:
        try:
            return dnf(rule.when, negate)
        except TooComplex:
            return None
    return _Analysed(policy, rule, frozenset(facts_of(rule.when)), boxes(False), boxes(True))


def _implies(a: _Analysed, b: _Analysed) -> bool:
    if not b.facts <= a.facts or a.boxes is None or b.negated is None:
        return False
    try:
        return not conjoin([a.boxes, b.negated])
    except TooComplex:
        return False


def lint(policy_set: PolicySet, cases: Sequence[Case] | None = None) -> list[Finding]:
    """Every finding about `policy_set`; `cases` None skips the untested-rule check."""
    findings: list[Finding] = []
    live: list[_Analysed] = []
    for p in policy_set.policies:
        for r in p.rules:
            a = _analyse(p, r)
            if a.boxes == []:
                findings.append(Finding(r.pos, "error", "dead-rule",
                                        f"rule '{r.id}' can never fire: no valid values make "
                                        f"{r.when.text()} true"))
                continue
            live.append(a)
            if a.negated == []:
                findings.append(Finding(r.pos, "warning", "always-true",
                                        f"rule '{r.id}' fires on every valid snapshot: "
                                        f"{r.when.text()} is always true"))
    findings.extend(_pairs(live))
    findings.extend(_threshold_conflicts(policy_set))
    if cases is not None:
        findings.extend(_untested(policy_set, cases))
    return sorted(set(findings))


def _severity(kind: str, action: str) -> int:
    try:
        if kind == "SafetyPolicy":
            return Action(action).severity
        if kind == "OrderPolicy":
            return OrderAction(action).severity
    except ValueError:
        return 0
    return 0


def _pairs(live: Sequence[_Analysed]) -> Iterator[Finding]:
    """Duplicate conditions and shadowed rules, within one policy kind."""
    order = {a.rule.id: i for i, a in enumerate(live)}
    for a in live:
        pr, r = a.policy, a.rule
        for b in live:
            ps, s = b.policy, b.rule
            if s.id == r.id or ps.kind != pr.kind or not _implies(a, b):
                continue
            same = _implies(b, a)
            if same and s.action != r.action:
                if order[s.id] < order[r.id]:  # reported once, at the later rule
                    yield Finding(r.pos, "error", "duplicate-condition",
                                  f"rule '{r.id}' ({r.action}) has the same condition as rule "
                                  f"'{s.id}' at {s.pos} ({s.action}): {r.when.text()}",
                                  (s.pos,))
                continue
            if not _accepts_all(ps, pr) or _approvers(pr, r.id) > _approvers(ps, s.id):
                # A rule asking for more approvers matters even when it never decides.
                continue
            sev_r, sev_s = _severity(pr.kind, r.action), _severity(ps.kind, s.action)
            if sev_s > sev_r or (sev_s == sev_r and order[s.id] < order[r.id]):
                why = (f"its action {s.action} is more restrictive than {r.action}"
                       if sev_s > sev_r else f"it comes first with the same action {s.action}")
                yield Finding(r.pos, "warning", "shadowed-rule",
                              f"rule '{r.id}' can never decide: rule '{s.id}' at {s.pos} "
                              f"fires whenever it fires and {why} ({r.when.text()} implies "
                              f"{s.when.text()})", (s.pos,))


def _approvers(policy: Policy, rule_id: str) -> int:
    """How many people an ApprovalPolicy rule asks for (1 for any other rule)."""
    default = int(policy.spec.get("approvers", 1))
    for r in policy.spec.get("rules", ()):
        if r.get("id") == rule_id:
            return int(r.get("approvers", default))
    return default


def _accepts_all(winner: Policy, loser: Policy) -> bool:
    """Whether every fact value `loser` uses is fresh enough for `winner` too."""
    if winner.name == loser.name or winner.max_fact_age is None:
        return True
    return loser.max_fact_age is not None and loser.max_fact_age <= winner.max_fact_age


def _single_fact(cond: Condition, fact: str,
                 given: Mapping[str, ValueSet] | None = None) -> list[Domain]:
    """The values of `fact` on which the condition holds whatever the other facts are (those
    in `given` have the values given there)."""
    try:
        boxes = dnf(cond)
    except TooComplex:
        return []
    known = given or {}
    out = []
    for b in boxes:
        if fact not in b or set(b) - {fact} - set(known):
            continue
        if all(_admits(b[k], v) for k, v in known.items() if k in b):
            out.append(b[fact])
    return out


def _admits(domain: Domain, values: ValueSet) -> bool:
    return not isinstance(domain, ValueSet) or not domain.intersect(values).empty


def _spec_pos(policy: Policy, path: tuple[str | int, ...]) -> Position:
    try:
        data = parse_policy_text(policy.path, policy.text).data
    except PolicyError:
        return Position(policy.path, 1, 1)
    return position_of(data, ("spec", *path), policy.path)


def _get(spec: Mapping[str, Any], *path: str) -> Any:
    node: Any = spec
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _threshold_conflicts(ps: PolicySet) -> Iterator[Finding]:
    safety = [(p, r) for p in ps.of_kind("SafetyPolicy") for r in p.rules]
    for rot in ps.of_kind("RotationPolicy"):
        yield from _eligibility(rot, safety)
        yield from _band(rot)
        yield from _approval_floor(rot, ps.of_kind("ApprovalPolicy"))
        yield from _order_cap(rot, ps.of_kind("OrderPolicy"))


_ELIGIBILITY = (("min_frs", "frs", True), ("min_expected_return", "expected_return", False))


def _eligibility(rot: Policy, safety: Sequence[tuple[Policy, Rule]]) -> Iterator[Finding]:
    for key, fact, closed in _ELIGIBILITY:
        bound = _get(rot.spec, "construction", "eligibility", key)
        if not isinstance(bound, (int, float)) or isinstance(bound, bool):
            continue
        eligible = full_domain(fact)
        assert isinstance(eligible, Interval)
        eligible = eligible.intersect(Interval(float(bound), closed, math.inf, False))
        where = _spec_pos(rot, ("construction", "eligibility", key))
        op = ">=" if closed else ">"
        for r, overlap in _overlaps((r for _, r in safety), fact, eligible):
            yield Finding(where, "warning", "threshold-conflict",
                          f"rotation eligibility {fact} {op} {num_text(bound)} admits {fact} in "
                          f"{overlap.text()}, where safety rule '{r.id}' at {r.pos} "
                          f"({r.action}) fires: such symbols get targets, but every order "
                          "that opens them is held", (r.pos,))


def _overlaps(rules: Iterable[Rule], fact: str, within: Interval,
              given: Mapping[str, ValueSet] | None = None) -> Iterator[tuple[Rule, Interval]]:
    """Each rule that fires on `fact` alone somewhere in `within`, with the first such part.
    `given`: facts whose value is known (an order the rotation places opens a position), which
    a rule may also read."""
    for r in rules:
        for d in _single_fact(r.when, fact, given or {}):
            assert isinstance(d, Interval)
            overlap = d.intersect(within)
            if not overlap.empty:
                yield r, overlap
                break


def _band(rot: Policy) -> Iterator[Finding]:
    band = _get(rot.spec, "band")
    if not isinstance(band, (int, float)) or isinstance(band, bool):
        return
    within = Interval(0.0, True, float(band), True)
    for r in rot.rules:
        for d in _single_fact(r.when, "weight_drift"):
            assert isinstance(d, Interval)
            overlap = d.intersect(within)
            if overlap.empty:
                continue
            yield Finding(r.pos, "warning", "threshold-conflict",
                          f"rule '{r.id}' fires on weight_drift in {overlap.text()}, inside the "
                          f"band {num_text(band)} a rebalance leaves (at "
                          f"{_spec_pos(rot, ('band',))}): it can fire again right after a "
                          "rebalance", (_spec_pos(rot, ("band",)),))
            break


def _approval_floor(rot: Policy, approvals: Sequence[Policy]) -> Iterator[Finding]:
    floor = _get(rot.spec, "sizing", "min_trade_notional")
    if not isinstance(floor, (int, float)) or isinstance(floor, bool):
        return
    placed = Interval(float(floor), True, math.inf, False)
    where = _spec_pos(rot, ("sizing", "min_trade_notional"))
    for ap in approvals:
        if ap.spec.get("mode", "semi_autonomous") != "semi_autonomous":
            continue
        for r in ap.rules:
            for d in _single_fact(r.when, "order_notional"):
                assert isinstance(d, Interval)
                if d.covers(placed):
                    yield Finding(r.pos, "warning", "threshold-conflict",
                                  f"rule '{r.id}' requires approval for order_notional in "
                                  f"{d.text()}, which covers every order the rotation places "
                                  f"(min_trade_notional {num_text(floor)} at {where}): no "
                                  "rebalance order goes out without a person", (where,))
                    break


def _order_cap(rot: Policy, orders: Sequence[Policy]) -> Iterator[Finding]:
    """A rotation whose `max_position` lets one order exceed what an order rule on
    `order_notional_pct_equity` refuses: the rebalance it plans is refused half-way."""
    cap = _get(rot.spec, "construction", "max_position")
    if not isinstance(cap, (int, float)) or isinstance(cap, bool):
        return
    placed = Interval(0.0, True, 100.0 * float(cap), True)
    where = _spec_pos(rot, ("construction", "max_position"))
    refusing = (r for op in orders for r in op.rules if r.action != "require_approval")
    for r, overlap in _overlaps(refusing, "order_notional_pct_equity", placed,
                                given={"order_opens": ValueSet(frozenset({True}))}):
        yield Finding(where, "warning", "threshold-conflict",
                      f"rotation max_position {num_text(cap)} lets one order reach "
                      f"{num_text(100.0 * float(cap))}% of equity, but order rule '{r.id}' at "
                      f"{r.pos} ({r.action}) refuses order_notional_pct_equity in "
                      f"{overlap.text()}: a first build or a large rebalance is refused "
                      "part-way", (r.pos,))


def _untested(ps: PolicySet, cases: Sequence[Case]) -> Iterator[Finding]:
    named: set[str] = set()
    for c in cases:
        if c.expect.rule:
            named.add(c.expect.rule)
        named.update(c.expect.fired or ())
    for p in ps.policies:
        for r in p.rules:
            if r.id not in named:
                yield Finding(r.pos, "warning", "untested-rule",
                              f"rule '{r.id}' has no test case (no case names it in "
                              "expect.rule or expect.fired)")
