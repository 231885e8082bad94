"""Policy test cases: YAML files of facts and the decision a policy set must reach on them.

```yaml
cases:
  - name: drift at the threshold halts
    facts: {ts: "2024-01-02T21:00:00Z", symbol: SPY, drift_score: 0.8, ...}
    expect: {action: halt, rule: drift-spike-halt, fired: [drift-spike-halt]}
  - name: big order waits for a person
    kind: approval
    order: {order_notional: 300000, symbol_held: true, order_opens: true, safety_action: allow}
    expect: {action: require_approval, rule: large-order-approval}
```

`kind` is safety (the default), rotation, approval or order. Safety and rotation cases give
`facts`; approval and order cases give the order's facts under `order` (an order case gives the
order and book facts the engine would compute: order_notional_pct_equity, price_deviation,
orders_last_minute, ...). `expect.rule` is checked when present (null: no rule decided);
`expect.fired` is the exact set of rules that fired (fail-closed findings are not rules).
Every problem of a file is reported at once, as FILE:LINE:COL: message.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from engine.actions import ACTION_NAMES, ORDER_RULE_ACTIONS
from engine.policy.problems import PolicyError, Position, Problem
from engine.policy.yamlsource import parse_policy_text, plain, position_of

CaseKind = Literal["safety", "rotation", "approval", "order"]
KINDS: tuple[CaseKind, ...] = ("safety", "rotation", "approval", "order")
#: Case kinds that give an order's facts under `order`.
ORDER_KINDS = ("approval", "order")

#: The policy kind each case kind is decided by.
POLICY_KIND: dict[str, str] = {
    "safety": "SafetyPolicy",
    "rotation": "RotationPolicy",
    "approval": "ApprovalPolicy",
    "order": "OrderPolicy",
}

#: Outcomes a case may expect. `hold` is the rotation policy's fail-closed outcome (a fact
#: its triggers read is missing or invalid, so nothing is traded).
ACTIONS: dict[str, tuple[str, ...]] = {
    "safety": ACTION_NAMES,
    "rotation": ("rebalance", "none", "hold"),
    "approval": ("require_approval", "none"),
    "order": (*ORDER_RULE_ACTIONS, "send"),
}

CASE_SUFFIXES = (".yaml", ".yml")
_TOP_KEYS = ("cases",)
_CASE_KEYS = ("name", "description", "kind", "facts", "order", "expect")
_EXPECT_KEYS = ("action", "rule", "fired")

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Expectation:
    action: str
    #: Whether `rule` is checked; a case may leave the deciding rule open.
    check_rule: bool
    rule: str | None
    fired: tuple[str, ...] | None

    def text(self) -> str:
        out = f"action {self.action}"
        if self.check_rule:
            out += f" rule {self.rule or '-'}"
        return out


@dataclass(frozen=True)
class Case:
    name: str
    kind: CaseKind
    facts: Mapping[str, Any]
    expect: Expectation
    pos: Position
    description: str = ""


class CaseError(Exception):
    """Test case files that cannot be used; carries every problem found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(sorted(problems))
        super().__init__("\n".join(str(p) for p in self.problems))


def discover_case_files(paths: Iterable[str]) -> list[str]:
    """Case files named by `paths`: files as given, directories by their *.yaml files,
    subdirectories included, in a stable order."""
    files: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            found: list[str] = []
            for root, dirs, names in os.walk(p):
                dirs.sort()
                found.extend(os.path.join(root, n) for n in names if n.endswith(CASE_SUFFIXES))
            files.extend(sorted(found))
        else:
            files.append(p)
    return files


def load_cases(paths: Iterable[str]) -> list[Case]:
    """Every case of every file; raises CaseError listing every problem of every file."""
    paths = list(paths)
    files = discover_case_files(paths)
    if not files:
        where = ", ".join(paths) or "(nothing)"
        raise CaseError([Problem(Position(where, 1, 1), "no test case files (*.yaml) found")])
    cases: list[Case] = []
    problems: list[Problem] = []
    for f in files:
        try:
            cases.extend(load_case_file(f))
        except CaseError as e:
            problems.extend(e.problems)
    if problems:
        raise CaseError(problems)
    return cases


def load_case_file(path: str) -> list[Case]:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise CaseError([Problem(Position(path, 1, 1), f"cannot read file: {e.strerror}")]) from e
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise CaseError([Problem(Position(path, line, 1), "file is not valid UTF-8")]) from e
    return parse_cases(path, text)


def parse_cases(path: str, text: str) -> list[Case]:
    """Cases from YAML text; `path` names the source in messages."""
    if not text.strip():
        raise CaseError([Problem(Position(path, 1, 1),
                                 "file is empty: expected a mapping with a 'cases' list")])
    try:
        data = parse_policy_text(path, text).data
    except PolicyError as e:
        raise CaseError(e.problems) from e
    reader = _Reader(path, data)
    cases = reader.cases()
    if reader.problems:
        raise CaseError(reader.problems)
    return cases


class _Reader:
    def __init__(self, path: str, data: Any) -> None:
        self.path = path
        self.data = data
        self.problems: list[Problem] = []

    def at(self, path: Path, message: str, *, key: bool = False) -> None:
        self.problems.append(Problem(position_of(self.data, path, self.path, key=key), message))

    def unknown_keys(self, node: Mapping[Any, Any], path: Path, allowed: tuple[str, ...],
                     what: str) -> None:
        for k in node:
            if k not in allowed:
                self.at((*path, k), f"{what}: unknown key '{k}' (expected one of: "
                                    f"{', '.join(allowed)})", key=True)

    def cases(self) -> list[Case]:
        if not isinstance(self.data, Mapping):
            self.at((), "a test file is a mapping with a 'cases' list")
            return []
        self.unknown_keys(self.data, (), _TOP_KEYS, "test file")
        items = self.data.get("cases")
        if "cases" not in self.data:
            self.at((), "missing required key 'cases'")
            return []
        if not isinstance(items, list) or not items:
            self.at(("cases",), "'cases' must be a non-empty list of cases")
            return []
        out: list[Case] = []
        first_line: dict[str, int] = {}
        for i, item in enumerate(items):
            case = self.case(item, ("cases", i))
            if case is None:
                continue
            if case.name in first_line:
                self.at(("cases", i, "name"), f"duplicate case name '{case.name}' (first at "
                                              f"line {first_line[case.name]})")
                continue
            first_line[case.name] = case.pos.line
            out.append(case)
        return out

    def case(self, item: Any, path: Path) -> Case | None:
        before = len(self.problems)
        if not isinstance(item, Mapping):
            self.at(path, "a case is a mapping with name, facts (or order) and expect")
            return None
        name = item.get("name")
        label = f"case '{name}'" if isinstance(name, str) else "case"
        self.unknown_keys(item, path, _CASE_KEYS, label)
        if "name" not in item:
            self.at(path, "case: missing required key 'name'")
        elif not isinstance(name, str) or not name.strip():
            self.at((*path, "name"), "case name must be a non-empty string")
        description = item.get("description", "")
        if not isinstance(description, str):
            self.at((*path, "description"), f"{label}: description must be a string")
        kind = item.get("kind", "safety")
        if kind not in KINDS:
            self.at((*path, "kind"), f"{label}: unknown kind {_show(kind)} (expected one of: "
                                     f"{', '.join(KINDS)})")
            kind = None
        facts = self.facts(item, path, kind, label)
        expect = self.expectation(item, path, kind, label)
        if len(self.problems) > before or kind is None or facts is None or expect is None:
            return None
        return Case(name=str(name), kind=kind, facts=facts, expect=expect,
                    pos=position_of(self.data, path, self.path),
                    description=str(description))

    def facts(self, item: Mapping[str, Any], path: Path, kind: str | None,
              label: str) -> dict[str, Any] | None:
        want = "order" if kind in ORDER_KINDS else "facts"
        other = "facts" if want == "order" else "order"
        if kind is not None and other in item:
            hint = (f"{kind} cases give the order's facts under 'order'" if kind in ORDER_KINDS
                    else f"{kind} cases give their facts under 'facts'; 'order' is for "
                         "approval and order cases")
            self.at((*path, other), f"{label}: {hint}", key=True)
            return None
        if kind is None:
            want = "order" if "order" in item else "facts"
        if want not in item:
            self.at(path, f"{label}: missing required key '{want}'")
            return None
        node = item[want]
        if not isinstance(node, Mapping):
            self.at((*path, want), f"{label}: '{want}' must be a mapping of fact names to "
                                   "values")
            return None
        return {str(k): plain(v) for k, v in node.items()}

    def expectation(self, item: Mapping[str, Any], path: Path, kind: str | None,
                    label: str) -> Expectation | None:
        if "expect" not in item:
            self.at(path, f"{label}: missing required key 'expect'")
            return None
        node = item["expect"]
        epath = (*path, "expect")
        if not isinstance(node, Mapping):
            self.at(epath, f"{label}: 'expect' must be a mapping with action, and optionally "
                           "rule and fired")
            return None
        before = len(self.problems)
        self.unknown_keys(node, epath, _EXPECT_KEYS, f"{label} expect")
        action = node.get("action")
        if "action" not in node:
            self.at(epath, f"{label}: expect: missing required key 'action'")
        elif kind is not None and action not in ACTIONS[kind]:
            self.at((*epath, "action"), f"{label}: {_show(action)} is not an outcome of a "
                                        f"{kind} case (one of: {', '.join(ACTIONS[kind])})")
        rule = node.get("rule")
        if rule is not None and (not isinstance(rule, str) or not rule):
            self.at((*epath, "rule"), f"{label}: expect.rule must be a rule id or null")
        fired = node.get("fired")
        fired_ids: tuple[str, ...] | None = None
        if "fired" in node:
            if not isinstance(fired, list) or not all(isinstance(x, str) for x in fired):
                self.at((*epath, "fired"), f"{label}: expect.fired must be a list of rule ids "
                                           "([] when no rule fires)")
            else:
                fired_ids = tuple(str(x) for x in fired)
                dupes = sorted({x for x in fired_ids if fired_ids.count(x) > 1})
                if dupes:
                    self.at((*epath, "fired"), f"{label}: expect.fired names "
                                               f"{', '.join(dupes)} twice")
        if len(self.problems) > before:
            return None
        return Expectation(action=str(action), check_rule="rule" in node,
                           rule=str(rule) if rule is not None else None, fired=fired_ids)


def _show(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, (Mapping, list)):
        return "a mapping" if isinstance(v, Mapping) else "a list"
    return repr(v) if not isinstance(v, str) else repr(str(v))
