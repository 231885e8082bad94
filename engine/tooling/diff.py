"""The semantic difference between two policy sets, and what it would change on real facts.

Policies are matched by kind and name, rules by id. A policy whose content changed (anything
but comments and layout: metadata, settings, rules, their order) must carry a new
`metadata.version`; a change without one is an error, because audit records name policies by
version. Replaying snapshots through both sets' safety evaluators counts the decisions that
would change, by transition.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from engine.backends.agreement import BATCH, CheckedBackend
from engine.policy.model import AllOf, Condition, Leaf, NotOf, Policy, PolicySet, Rule
from engine.policy.problems import PolicyError, Position
from engine.policy.yamlsource import parse_policy_text, position_of
from engine.shadow import ShadowDifference, ShadowSummary, difference

Status = Literal["added", "removed", "changed", "unchanged"]


def canonical(cond: Condition) -> Any:
    """A condition without its source positions: equal when the logic is written the same."""
    if isinstance(cond, Leaf):
        return ("leaf", cond.fact, cond.op, cond.value)
    if isinstance(cond, NotOf):
        return ("not", canonical(cond.item))
    return ("all" if isinstance(cond, AllOf) else "any", tuple(canonical(c) for c in cond.items))


@dataclass(frozen=True)
class RuleChange:
    rule_id: str
    old: Rule | None
    new: Rule | None

    @property
    def status(self) -> Status:
        if self.old is None:
            return "added"
        if self.new is None:
            return "removed"
        return "changed" if self.fields else "unchanged"

    @property
    def fields(self) -> tuple[str, ...]:
        """Which parts changed: condition, action, description."""
        if self.old is None or self.new is None:
            return ()
        out = []
        if canonical(self.old.when) != canonical(self.new.when):
            out.append("condition")
        if self.old.action != self.new.action:
            out.append("action")
        if self.old.description != self.new.description:
            out.append("description")
        return tuple(out)

    def to_json(self) -> dict[str, Any]:
        def side(r: Rule | None) -> dict[str, Any] | None:
            if r is None:
                return None
            return {"when": r.when.text(), "action": r.action, "description": r.description,
                    "source": r.source}
        return {"rule": self.rule_id, "status": self.status, "fields": list(self.fields),
                "old": side(self.old), "new": side(self.new)}


@dataclass(frozen=True)
class SettingChange:
    """A changed value outside the rules, e.g. `spec.max_fact_age` or `metadata.owner`."""

    path: str
    old: Any
    new: Any

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "old": self.old, "new": self.new}


@dataclass(frozen=True)
class PolicyChange:
    kind: str
    name: str
    old: Policy | None
    new: Policy | None
    rules: tuple[RuleChange, ...] = ()
    settings: tuple[SettingChange, ...] = ()

    @property
    def status(self) -> Status:
        if self.old is None:
            return "added"
        if self.new is None:
            return "removed"
        return "changed" if self.content_changed else "unchanged"

    @property
    def content_changed(self) -> bool:
        return self.old is not None and self.new is not None and \
            _content(self.old) != _content(self.new)

    @property
    def version_not_bumped(self) -> bool:
        return self.content_changed and self.old is not None and self.new is not None and \
            self.old.version == self.new.version

    def version_problem(self) -> str:
        """FILE:LINE:COL: message when the content changed under the same version."""
        if not self.version_not_bumped or self.new is None:
            return ""
        return (f"{_version_pos(self.new)}: policy {self.name} ({self.kind}) changed but "
                f"metadata.version is still {self.new.version}: bump it so audit records "
                "can tell the two apart")

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "name": self.name, "status": self.status,
            "old_version": self.old.version if self.old else None,
            "new_version": self.new.version if self.new else None,
            "old_path": self.old.path if self.old else None,
            "new_path": self.new.path if self.new else None,
            "version_not_bumped": self.version_not_bumped,
            "rules": [r.to_json() for r in self.rules if r.status != "unchanged"],
            "settings": [s.to_json() for s in self.settings],
        }


@dataclass(frozen=True)
class PolicyDiff:
    policies: tuple[PolicyChange, ...]

    @property
    def changed(self) -> tuple[PolicyChange, ...]:
        return tuple(p for p in self.policies if p.status != "unchanged")

    @property
    def errors(self) -> tuple[str, ...]:
        return tuple(p.version_problem() for p in self.policies if p.version_not_bumped)

    def to_json(self) -> dict[str, Any]:
        return {"policies": [p.to_json() for p in self.changed], "errors": list(self.errors)}


def _content(p: Policy) -> Any:
    return (p.kind, p.description, p.owner, p.spec)


def _version_pos(p: Policy) -> Position:
    try:
        data = parse_policy_text(p.path, p.text).data
    except PolicyError:
        return Position(p.path, 1, 1)
    return position_of(data, ("metadata", "version"), p.path)


def diff_sets(old: PolicySet, new: PolicySet) -> PolicyDiff:
    olds = {(p.kind, p.name): p for p in old.policies}
    news = {(p.kind, p.name): p for p in new.policies}
    out: list[PolicyChange] = []
    for key in [*olds, *(k for k in news if k not in olds)]:
        o, n = olds.get(key), news.get(key)
        if o is None or n is None:
            out.append(PolicyChange(key[0], key[1], o, n))
            continue
        out.append(PolicyChange(key[0], key[1], o, n, _rule_changes(o, n), _settings(o, n)))
    return PolicyDiff(tuple(out))


def _rule_changes(old: Policy, new: Policy) -> tuple[RuleChange, ...]:
    o = {r.id: r for r in old.rules}
    n = {r.id: r for r in new.rules}
    ids = [*o, *(i for i in n if i not in o)]
    return tuple(RuleChange(i, o.get(i), n.get(i)) for i in ids)


def _settings(old: Policy, new: Policy) -> tuple[SettingChange, ...]:
    out: list[SettingChange] = []
    for field in ("description", "owner"):
        a, b = getattr(old, field), getattr(new, field)
        if a != b:
            out.append(SettingChange(f"metadata.{field}", a, b))
    a_flat = _flatten({k: v for k, v in old.spec.items() if k != "rules"}, "spec")
    b_flat = _flatten({k: v for k, v in new.spec.items() if k != "rules"}, "spec")
    for path in [*a_flat, *(p for p in b_flat if p not in a_flat)]:
        if a_flat.get(path) != b_flat.get(path):
            out.append(SettingChange(path, a_flat.get(path), b_flat.get(path)))
    common_old = [r.id for r in old.rules if r.id in {x.id for x in new.rules}]
    common_new = [r.id for r in new.rules if r.id in {x.id for x in old.rules}]
    if common_old != common_new:
        out.append(SettingChange("spec.rules (order)", common_old, common_new))
    return tuple(out)


def _flatten(node: Any, prefix: str) -> dict[str, Any]:
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}.{k}"))
        return out
    return {prefix: node}


class DiffReplay:
    """Both sets' safety policies in the vectorised backend, each checked against
    durable-rules on every snapshot: a disagreement raises BackendDisagreement. Raises
    ValueError when a set has no safety policy."""

    def __init__(self, old: PolicySet, new: PolicySet) -> None:
        self.old = CheckedBackend(old)
        try:
            self.new = CheckedBackend(new)
        except ValueError:
            self.old.close()
            raise

    def differences(self, chunk: Sequence[tuple[str, object]],
                    ) -> list[ShadowDifference | None]:
        """How each (where, snapshot) of `chunk` would change, in order (None: it would
        not)."""
        old_batch, _ = self.old.check(chunk)
        new_batch, _ = self.new.check(chunk)
        return [difference(old_batch.decision(i), new_batch.decision(i), where)
                for i, (where, _snap) in enumerate(chunk)]

    def close(self) -> None:
        self.old.close()
        self.new.close()


def replay(old: PolicySet, new: PolicySet, snapshots: Iterable[tuple[str, object]], *,
           examples: int = 5) -> ShadowSummary:
    """Decide every (where, snapshot) under both sets' safety policies and count the
    decisions whose action or deciding rule would change (see DiffReplay)."""
    differ = DiffReplay(old, new)
    summary = ShadowSummary(examples)
    try:
        it = iter(snapshots)
        while chunk := list(itertools.islice(it, BATCH)):
            for diff in differ.differences(chunk):
                summary.add(diff)
    finally:
        differ.close()
    return summary
