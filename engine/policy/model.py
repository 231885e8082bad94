"""Policies as frozen data: what the validator produces and every later stage reads."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from typing import Any, Literal

from engine.policy.problems import Position

Scalar = float | int | bool | str
Op = Literal["<", "<=", ">", ">=", "==", "!=", "in", "not_in"]
OPS: tuple[str, ...] = ("<", "<=", ">", ">=", "==", "!=", "in", "not_in")


@dataclass(frozen=True)
class Leaf:
    fact: str
    op: Op
    value: Scalar | tuple[Scalar, ...]
    pos: Position

    def text(self) -> str:
        return f"{self.fact} {self.op} {_value_text(self.value)}"


@dataclass(frozen=True)
class AllOf:
    items: tuple[Condition, ...]
    pos: Position

    def text(self) -> str:
        return "(" + " and ".join(c.text() for c in self.items) + ")"


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Condition, ...]
    pos: Position

    def text(self) -> str:
        return "(" + " or ".join(c.text() for c in self.items) + ")"


@dataclass(frozen=True)
class NotOf:
    item: Condition
    pos: Position

    def text(self) -> str:
        return f"not {self.item.text()}"


Condition = Leaf | AllOf | AnyOf | NotOf


def leaves(cond: Condition) -> Iterator[Leaf]:
    """Every comparison of a condition, in source order."""
    if isinstance(cond, Leaf):
        yield cond
    elif isinstance(cond, NotOf):
        yield from leaves(cond.item)
    else:
        for item in cond.items:
            yield from leaves(item)


def facts_of(cond: Condition) -> tuple[str, ...]:
    """The fact names a condition reads, each once, in source order."""
    return tuple(dict.fromkeys(leaf.fact for leaf in leaves(cond)))


def _value_text(value: Scalar | tuple[Scalar, ...]) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_value_text(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    return repr(value)


@dataclass(frozen=True)
class Rule:
    id: str
    description: str
    when: Condition
    action: str
    pos: Position
    policy: str

    @cached_property
    def facts(self) -> tuple[str, ...]:
        """The facts the rule reads, in source order (computed once: decisions ask often)."""
        return facts_of(self.when)

    @property
    def source(self) -> str:
        return str(self.pos)


@dataclass(frozen=True)
class AlertSettings:
    """When a safety action becomes an alert episode, in cycles (a replay has one a day).

    An action must hold for `min_duration` cycles before its episode opens, except a halt,
    which alerts at once; an open episode closes only after its action has been absent for
    `clear_after` cycles. Counting cycles rather than time keeps a replay and a live loop
    alike whatever their cadence.
    """

    min_duration: int = 2
    clear_after: int = 2

    def __post_init__(self) -> None:
        for label, value in (("min_duration", self.min_duration),
                             ("clear_after", self.clear_after)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"alerts.{label} must be a whole number of cycles >= 1, "
                                 f"got {value!r}")

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> AlertSettings:
        """The settings of a SafetyPolicy spec (validated by the schema); defaults when absent."""
        alerts = spec.get("alerts")
        if not isinstance(alerts, Mapping):
            return cls()
        default = cls()
        return cls(min_duration=alerts.get("min_duration", default.min_duration),
                   clear_after=alerts.get("clear_after", default.clear_after))


@dataclass(frozen=True)
class Policy:
    kind: str
    name: str
    version: str
    description: str
    owner: str
    path: str
    text: str
    rules: tuple[Rule, ...]
    fail_closed: str
    max_fact_age: timedelta | None
    #: The whole spec as plain data, for the parts a stage reads besides the rules.
    spec: Mapping[str, Any] = field(default_factory=dict)
    #: How far a snapshot may be dated ahead of the wall clock; None: the engine's default.
    max_clock_skew: timedelta | None = None

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class PolicySet:
    policies: tuple[Policy, ...]

    @property
    def hash(self) -> str:
        """Content hash of the set: changes when any policy's text, name or kind changes."""
        h = hashlib.sha256()
        for p in sorted(self.policies, key=lambda p: (p.kind, p.name)):
            h.update(f"{p.kind}\0{p.name}\0{p.hash}\n".encode())
        return h.hexdigest()

    @property
    def alert_settings(self) -> AlertSettings:
        """The `alerts` settings of the safety policy that declares them (the loader refuses
        a set where two declare them), or the defaults."""
        for p in self.of_kind("SafetyPolicy"):
            if "alerts" in p.spec:
                return AlertSettings.from_spec(p.spec)
        return AlertSettings()

    def of_kind(self, kind: str) -> tuple[Policy, ...]:
        return tuple(p for p in self.policies if p.kind == kind)

    def versions(self) -> dict[str, str]:
        return {p.name: p.version for p in self.policies}

    def rule(self, rule_id: str) -> Rule | None:
        for p in self.policies:
            for r in p.rules:
                if r.id == rule_id:
                    return r
        return None

    def policy(self, name: str) -> Policy | None:
        for p in self.policies:
            if p.name == name:
                return p
        return None
