"""The one module that speaks to durable-rules, and turns its sharp edges into plain behaviour.

What it guards against (measured on durable-rules 2.0.28):
- events fire only the first matching rule, so snapshots are asserted as *facts* (which fire
  every matching rule), drained, and retracted in a `finally`;
- a condition on a missing attribute silently does not match, NaN reads as null, strings and
  booleans compare loosely with numbers: values are type-checked and serialised here, and the
  caller guarantees every fact a rule reads is present and valid;
- `json.dumps` writes NaN, Infinity and exponent forms the C parser rejects or misreads: numbers
  are written by `_number`;
- more than 64 matching conditions on one fact raise error 303 and fire nothing, and more than
  about 511 conditions under one node hang `create_ruleset`: rules are packed into rulesets of at
  most MAX_COMPARISONS comparisons, and any engine error raises EngineError (callers fail closed);
- the C core has no locks: each ruleset is used under its own lock, with one session id;
- rulesets cannot be replaced in place: each compilation registers new, uniquely named rulesets
  and deletes them when the compiled object is released.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import durable_rules_engine as _dre

from engine.policy.model import AllOf, Condition, Leaf, NotOf, Scalar

#: Comparisons per compiled ruleset; error 303 appears past 64 distinct matching comparisons.
MAX_COMPARISONS = 48
_MARK = "fb_snapshot"
_SID = "0"
_names = itertools.count(1)
_NEGATE = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "==",
           "in": "not_in", "not_in": "in"}
_OPS = {"<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte", "==": "$eq", "!=": "$neq"}
_MAX_INT = 2**53


class EngineError(ValueError):
    """durable-rules refused a ruleset or failed on a fact; the caller must fail closed."""


@dataclass(frozen=True)
class RuleSpec:
    """One rule to compile: its id and condition."""

    id: str
    when: Condition


def comparisons(cond: Condition) -> int:
    """How many engine comparisons a condition compiles into."""
    if isinstance(cond, Leaf):
        return len(cond.value) if isinstance(cond.value, tuple) else 1
    if isinstance(cond, NotOf):
        return comparisons(cond.item)
    return sum(comparisons(c) for c in cond.items)


class _Ruleset:
    """One durable-rules ruleset with its lock and its fact-id counter."""

    def __init__(self, label: str, rules: Sequence[RuleSpec]) -> None:
        self.keys = {f"r{i}": r.id for i, r in enumerate(rules)}
        definition = ",".join(
            f'"r{i}":{{"all":[{{"m":{{"$and":[{{"{_MARK}":1}},{_expr(r.when, False)}]}}}}]}}'
            for i, r in enumerate(rules))
        self.name = f"fugger-{next(_names)}-{label}"
        try:
            self.handle: int = _dre.create_ruleset(self.name, "{" + definition + "}")
        except Exception as e:
            raise EngineError(f"durable-rules refused ruleset {self.name}: {e}") from e
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self._head = f'{{"sid":"{_SID}","id":%d,"{_MARK}":1'

    def fired(self, body: str) -> list[str]:
        """Ids of the rules that fire on the fact `{..., body}`, in the order they fired."""
        handle = self.handle
        names: list[str] = []
        with self.lock:
            fact = f"{self._head % next(self.ids)}{',' if body else ''}{body}}}"
            try:
                code, state = _dre.assert_fact(handle, fact)
                if code == 1:  # "not handled": no rule matched
                    return names
                if code != 0:
                    raise EngineError(f"durable-rules returned code {code} for a snapshot")
                result = _dre.start_action_for_state(handle, state)
                while result:
                    message = result[1] if isinstance(result, tuple) else result
                    names.append(_action_name(message))
                    result = _dre.complete_and_start_action(handle, state)
            except EngineError:
                raise
            except Exception as e:
                raise EngineError(f"durable-rules failed on a snapshot: {e}") from e
            finally:
                # Not contextlib.suppress: this runs for every snapshot. The fact may never
                # have been asserted.
                try:  # noqa: SIM105
                    _dre.retract_fact(handle, fact)
                except Exception:
                    pass
        keys = self.keys
        return [keys[k] for k in names if k in keys]


def _action_name(message: str) -> str:
    """The rule name of a pending action, `{"r3": {...}}`, without parsing the whole fact."""
    if message.startswith('{"'):
        end = message.find('"', 2)
        if end > 2:
            return message[2:end]
    names = list(json.loads(message))
    return str(names[0]) if names else ""


def _delete(handles: list[int]) -> None:
    for h in handles:
        with contextlib.suppress(Exception):
            _dre.delete_ruleset(h)


class CompiledRules:
    """A group of rules compiled into as many rulesets as the engine's limits require."""

    def __init__(self, label: str, rules: Sequence[RuleSpec]) -> None:
        self.rule_ids = tuple(r.id for r in rules)
        self.facts = tuple(dict.fromkeys(f for r in rules for f in _facts(r.when)))
        self._prefix = {f: json.dumps(f) + ":" for f in self.facts}
        self._rulesets: list[_Ruleset] = []
        try:
            for chunk in _pack(rules):
                self._rulesets.append(_Ruleset(label, chunk))
        finally:
            self._finalizer = weakref.finalize(self, _delete,
                                               [rs.handle for rs in self._rulesets])

    def fired(self, values: Mapping[str, Scalar]) -> frozenset[str]:
        """Ids of every rule whose condition holds for `values`.

        `values` holds validated facts. A fact left out is unknown: since negations are pushed
        down to comparisons and a comparison on an absent attribute never matches, a rule
        fires only when it would fire whatever the unknown values are. The caller fails closed
        on the unknown facts themselves. A value this module cannot write exactly raises
        EngineError rather than being guessed at.
        """
        prefix = self._prefix
        parts = []
        for k in self.facts:
            if k in values:
                v = values[k]
                if type(v) is float and v - v == 0.0:  # the common case: a finite float
                    text = repr(v)
                    if "e" in text:
                        text = _number(v, k)
                elif type(v) is int and -_MAX_INT < v < _MAX_INT:  # a count, exactly
                    text = str(v)
                else:
                    text = _value(v, k)
                parts.append(prefix[k] + text)
        body = ",".join(parts)
        if len(self._rulesets) == 1:
            return frozenset(self._rulesets[0].fired(body))
        return frozenset(r for rs in self._rulesets for r in rs.fired(body))

    def close(self) -> None:
        self._finalizer()


def _pack(rules: Sequence[RuleSpec]) -> list[list[RuleSpec]]:
    chunks: list[list[RuleSpec]] = []
    current: list[RuleSpec] = []
    used = 0
    for r in rules:
        n = comparisons(r.when)
        if n > MAX_COMPARISONS:
            raise EngineError(f"rule '{r.id}' has {n} comparisons; at most {MAX_COMPARISONS}")
        if current and used + n > MAX_COMPARISONS:
            chunks.append(current)
            current, used = [], 0
        current.append(r)
        used += n
    if current:
        chunks.append(current)
    return chunks


def _facts(cond: Condition) -> list[str]:
    if isinstance(cond, Leaf):
        return [cond.fact]
    if isinstance(cond, NotOf):
        return _facts(cond.item)
    return [f for c in cond.items for f in _facts(c)]


def _expr(cond: Condition, negate: bool) -> str:
    """The durable-rules expression of a condition. The engine has no `not`: negations are
    pushed down to the comparisons, which is exact because every value is present and typed."""
    if isinstance(cond, Leaf):
        op = _NEGATE[cond.op] if negate else cond.op
        key = json.dumps(cond.fact)
        if op in ("in", "not_in"):
            values = cond.value if isinstance(cond.value, tuple) else (cond.value,)
            inner = ",".join(f'{{"{"$eq" if op == "in" else "$neq"}":{{{key}:{_value(v, key)}}}}}'
                             for v in values)
            return f'{{"{"$or" if op == "in" else "$and"}":[{inner}]}}'
        return f'{{"{_OPS[op]}":{{{key}:{_value(_single(cond.value), key)}}}}}'
    if isinstance(cond, NotOf):
        return _expr(cond.item, not negate)
    conj = isinstance(cond, AllOf) != negate
    inner = ",".join(_expr(c, negate) for c in cond.items)
    return f'{{"{"$and" if conj else "$or"}":[{inner}]}}'


def _single(value: Scalar | tuple[Scalar, ...]) -> Scalar:
    if isinstance(value, tuple):
        raise EngineError("a list value needs 'in' or 'not_in'")
    return value


def _value(v: Any, name: str) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        if abs(v) >= _MAX_INT:
            raise EngineError(f"{name}: integer {v} is too large for the rule engine")
        return str(v)
    if isinstance(v, float):
        return _number(v, name)
    if isinstance(v, str):
        return json.dumps(v)
    raise EngineError(f"{name}: {type(v).__name__} value cannot be evaluated")


def _number(x: float, name: str) -> str:
    """A float in a form the engine's parser reads back exactly: finite, and with a dot
    before any exponent (it rejects `1e-05`, which is what Python writes)."""
    if not math.isfinite(x):
        raise EngineError(f"{name}: {x!r} is not a finite number")
    text = repr(x)
    if "e" in text:
        mantissa, exponent = text.split("e")
        if "." not in mantissa:
            mantissa += ".0"
        text = f"{mantissa}e{exponent}"
    return text
