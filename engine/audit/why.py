"""Answering "why": which rule decided, under which policy version, on which values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.audit.store import AuditStore, Record
from engine.clock import recorded_clock
from engine.evaluator import SafetyEvaluator
from engine.ids import short
from engine.policy.loader import policy_set_from_texts
from engine.policy.model import PolicySet, Rule
from engine.policy.problems import PolicyError
from engine.rules.reference import comparisons


@dataclass(frozen=True)
class WhyReport:
    #: Plain text: symbols, rule ids and fact values are quoted as recorded.
    lines: tuple[str, ...]
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return self.data


def explain_record(store: AuditStore, rows: Sequence[Record]) -> WhyReport:
    """Explain the records about one id. Decisions are explained directly; any other record
    that names a decision (`decision_id` in its body) is explained through that decision."""
    decision = next((r for r in rows if r.kind == "decision"), None)
    lines: list[str] = []
    data: dict[str, Any] = {}
    others = [r for r in rows if r.kind != "decision"]
    if others:
        lines.extend(_event_lines(others))
        data["events"] = [{"seq": r.seq, "kind": r.kind, "recorded": r.ts, "body": r.body}
                          for r in others]
        if decision is None:
            ids = [r.body.get("decision_id") for r in others if r.body.get("decision_id")]
            if ids:
                found = store.find(str(ids[-1]))
                decision = next((r for r in found if r.kind == "decision"), None)
                lines.append("")
    if decision is None:
        if not others:
            raise ValueError("the record names no decision to explain")
        return WhyReport(tuple(lines), data)
    d_lines, d_data = _decision(store, decision)
    controls = [r.body["controls"] for r in others
                if isinstance(r.body.get("controls"), dict) and r.body["controls"].get("rule")]
    if controls:
        policy_set = rebuild(store.activation(
            decision.body.get("decision", {}).get("policy_set", {}).get("hash", "")))
        lines.extend(_controls_lines(policy_set, controls[-1]))
        data["controls"] = controls[-1]
    lines.extend(d_lines)
    data["decision"] = d_data
    return WhyReport(tuple(lines), data)


def _controls_lines(policy_set: PolicySet | None, c: dict[str, Any]) -> list[str]:
    """What the order policy decided on the order: its deciding rule on the order and book
    facts the engine computed."""
    lines = [f"Order policy {c.get('policy')}: {str(c.get('action')).upper()} by "
             f"rule {c.get('rule')}"
             + (f" at {c['source']}" if c.get("source") else "")]
    for problem in c.get("problems") or ():
        lines.append(f"  could not be computed: {problem} (fails closed)")
    rule = policy_set.rule(str(c.get("rule"))) if policy_set is not None else None
    if rule is not None:
        lines.extend(_comparison_lines(rule, c.get("observed") or {}, "  "))
    others = [f for f in c.get("fired") or () if f != c.get("rule")]
    if others:
        lines.append(f"  also fired: {', '.join(others)}")
    lines.append("")
    return lines


def _activation_lines(r: Record) -> list[str]:
    """A policy activation: which set, who put it in force, for what, and its policies."""
    b = r.body
    scope = b.get("scope") or "-"
    run = f" run {short(str(b['run_id']))}" if b.get("run_id") else ""
    lines = [f"policy_activation of set {short(r.ref)} at {r.ts} by {b.get('activated_by')} "
             f"(scope {scope}{run}" + (", explicit" if b.get("explicit") else "") + ")"]
    if b.get("reason"):
        lines.append(f"  reason: {b['reason']}")
    for p in b.get("policies", ()):
        lines.append(f"  {p.get('kind')} {p.get('name')} {p.get('version')}  {p.get('path')}"
                     f"  (hash {short(str(p.get('hash', '')))})")
    for m in b.get("removed", ()):
        lines.append(f"  removed: {m.get('kind')} {m.get('name')}  {m.get('path')}")
    return lines


def _event_lines(records: Sequence[Record]) -> list[str]:
    lines = []
    for r in records:
        if r.kind == "policy_activation":
            lines.extend(_activation_lines(r))
            continue
        b = r.body
        rule = b.get("rule") or "-"
        status = b.get("status") or r.kind
        what = b.get("summary") or ""
        lines.append(f"{r.kind} {short(r.ref)} at {r.ts}: {status}"
                     + (f" by rule {rule}" if rule != "-" else "") + (f"  {what}" if what else ""))
    return lines


def _decision(store: AuditStore, record: Record) -> tuple[list[str], dict[str, Any]]:
    d = record.body.get("decision", {})
    facts = record.body.get("facts", {})
    policy_hash = d.get("policy_set", {}).get("hash", "")
    activation = store.activation(policy_hash)
    policy_set = rebuild(activation)
    rule = d.get("deciding_rule")
    lines = [
        f"Decision {short(str(d.get('decision_id')))} for {d.get('symbol')} at {d.get('ts')}: "
        f"{str(d.get('action')).upper()}"
        + (" (all clear)" if d.get("all_clear") else " (not all clear)"),
    ]
    if rule:
        lines.append(f"Deciding rule: {rule['rule']} of policy {rule['policy']} "
                     f"{rule['version']} at {rule['source']}")
        lines.extend(_rule_detail(policy_set, rule["rule"], d, indent="  "))
    else:
        lines.append("No rule fired and every fact a rule needs was present and valid.")
    findings = d.get("findings", [])
    if findings:
        lines.append("Facts that could not be used (fail closed):")
        for f in findings:
            lines.append(f"  {f['rule']}: {f['detail']} -> {f['action']}"
                         + (f" (read by {', '.join(f['needed_by'])})" if f.get("needed_by")
                            else ""))
    other = [f for f in d.get("fired", []) if not rule or f["rule"] != rule["rule"]]
    if other:
        lines.append("Other rules that fired:")
        for f in other:
            lines.append(f"  {f['rule']} -> {f['action']} ({f['source']})")
            lines.extend(_rule_detail(policy_set, f["rule"], d, indent="    "))
    versions = ", ".join(f"{k} {v}" for k, v in d.get("policy_set", {}).get("policies",
                                                                             {}).items())
    lines.append(f"Policy set {short(policy_hash)}: {versions}")
    if activation is not None:
        lines.append(f"  activated {activation.ts} by {activation.body.get('activated_by')} "
                     f"on {activation.body.get('host')} (audit record {activation.seq})")
    else:
        lines.append("  no activation record for this policy set in the store")
    lines.append("Facts (hash " + short(str(d.get("facts_hash", ""))) + "): "
                 + ", ".join(f"{k}={v}" for k, v in facts.items()
                             if k not in ("ts", "symbol")))
    replay = _replay(policy_set, facts, d)
    lines.append(replay)
    return lines, {"record": {"seq": record.seq, "recorded": record.ts}, "decision": d,
                   "facts": facts, "replay": replay}


def _rule_detail(policy_set: PolicySet | None, rule_id: str, d: dict[str, Any],
                 indent: str) -> list[str]:
    if policy_set is None:
        return []
    rule = policy_set.rule(rule_id)
    observed: dict[str, Any] = {}
    for f in d.get("fired", []):
        if f["rule"] == rule_id:
            observed = f.get("observed", {})
    if rule is None:
        return [f"{indent}(a fail-closed rule: the fact above could not be used)"]
    return _comparison_lines(rule, observed, indent)


def _comparison_lines(rule: Rule, observed: dict[str, Any], indent: str) -> list[str]:
    """A rule's condition, comparison by comparison, on the values it saw."""
    lines = [f"{indent}when {rule.when.text()}"]
    for c in comparisons(rule.when, observed):
        seen = "unknown" if c.observed is None else repr(c.observed)
        verdict = {True: "true", False: "false", None: "unknown"}[c.result]
        lines.append(f"{indent}  {c.leaf.fact} {c.leaf.op} {c.leaf.value!r}: observed {seen} "
                     f"-> {verdict}")
    return lines


def rebuild(activation: Record | None) -> PolicySet | None:
    """The policy set an activation record put in force, from the full text it keeps; None
    when that text is missing or no longer valid."""
    if activation is None:
        return None
    sources = [(p["path"], p["text"]) for p in activation.body.get("policies", [])]
    try:
        return policy_set_from_texts(sources)
    except PolicyError:
        return None


def _replay(policy_set: PolicySet | None, facts: dict[str, Any], d: dict[str, Any]) -> str:
    if policy_set is None:
        return "Re-evaluation: impossible, the recorded policy text is missing or invalid"
    evaluator = SafetyEvaluator(policy_set)
    try:
        again = evaluator.decide(facts, clock=recorded_clock(d))
    finally:
        evaluator.close()
    same = (again.action.value == d.get("action")
            and again.rule
            == (d.get("deciding_rule") or {}).get("rule")
            and sorted(f.rule for f in again.fired) == sorted(f["rule"] for f in d.get("fired",
                                                                                    [])))
    if same:
        return ("Re-evaluated from the recorded policy text and facts: same action, deciding "
                "rule and fired rules")
    return (f"Re-evaluation differs: now {again.action.value} by "
            f"{again.rule or '-'}")
