"""The Policy built from a document that passed every check."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from engine.policy.duration import parse_duration
from engine.policy.model import AllOf, AnyOf, Condition, Leaf, NotOf, Op, Policy, Rule, Scalar
from engine.policy.validate.wording import Path
from engine.policy.yamlsource import YamlDocument, node_position, plain, position_of

DEFAULT_FAIL_CLOSED = {
    "SafetyPolicy": "halt",
    "RotationPolicy": "hold",
    "ApprovalPolicy": "require_approval",
    "AccessPolicy": "deny",
    "OrderPolicy": "deny",
}


def build(doc: YamlDocument) -> Policy:
    data = doc.data
    meta, spec = data["metadata"], data["spec"]
    kind = str(data["kind"])
    name = str(meta["name"])
    rules = tuple(
        Rule(
            id=str(r["id"]),
            description=str(r.get("description", "")),
            when=_condition(doc, r["when"], ("spec", "rules", i, "when")),
            action=str(r["action"]),
            pos=position_of(data, ("spec", "rules", i), doc.path),
            policy=name,
        )
        for i, r in enumerate(spec.get("rules", ()))
    )
    age = spec.get("max_fact_age")
    skew = spec.get("max_clock_skew")
    return Policy(
        kind=kind,
        name=name,
        version=str(meta["version"]),
        description=str(meta.get("description", "")),
        owner=str(meta.get("owner", "")),
        path=doc.path,
        text=doc.text,
        rules=rules,
        fail_closed=str(spec.get("fail_closed", DEFAULT_FAIL_CLOSED[kind])),
        max_fact_age=parse_duration(str(age)) if age is not None else None,
        spec=plain(spec),
        max_clock_skew=parse_duration(str(skew)) if skew is not None else None,
    )


def _condition(doc: YamlDocument, node: Mapping[str, Any], path: Path) -> Condition:
    pos = node_position(node, doc.path) or position_of(doc.data, path, doc.path)
    if "fact" in node:
        raw = node["value"]
        value: Scalar | tuple[Scalar, ...] = (
            tuple(_scalar(v) for v in raw) if isinstance(raw, list) else _scalar(raw))
        return Leaf(str(node["fact"]), cast(Op, str(node["op"])), value, pos)
    if "all" in node:
        return AllOf(tuple(_condition(doc, c, (*path, "all", j))
                           for j, c in enumerate(node["all"])), pos)
    if "any" in node:
        return AnyOf(tuple(_condition(doc, c, (*path, "any", j))
                           for j, c in enumerate(node["any"])), pos)
    return NotOf(_condition(doc, node["not"], (*path, "not")), pos)


def _scalar(v: object) -> Scalar:
    # ruamel's round-trip scalars are subclasses that remember formatting; keep plain values.
    if isinstance(v, bool):
        return bool(v)
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v)
    return str(v)
