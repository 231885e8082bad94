"""The paths a snapshot can take to its fired rules, each returning the ids of the rules that
fired, so every contender can be checked against the others on every snapshot.

- plain: the policy's conditions compiled into one Python expression per rule (the floor);
- raw: the same rules through durable-rules' C API and nothing else: the snapshot written
  into the engine's fact text the cheapest way (a format string over the values), asserted
  as a fact, the pending actions drained (each names its rule, read without parsing the
  message), and the fact retracted; rules packed into rulesets as the engine packs them;
- engine: `SafetyEvaluator.decide` (envelope and fact checks, durable-rules, the Decision).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import durable_rules_engine as dre

from engine.policy.model import AllOf, AnyOf, Condition, Leaf, Policy
from engine.rules.durable_backend import MAX_COMPARISONS, comparisons

Snapshot = dict[str, Any]
Contender = Callable[[Snapshot], frozenset[str]]

FACTS = ("drift_score", "volatility", "coherence", "frs", "meta_reliability")
_BASE = (("drift_score", ">=", 0.8, "halt"), ("volatility", ">=", 0.35, "flatten"),
         ("coherence", "<=", 0.5, "block_new"), ("frs", "<", 0.4, "wait_confirmation"),
         ("meta_reliability", "<", 0.4, "wait_confirmation"))
_OPS = {"<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte", "==": "$eq", "!=": "$neq"}


def snapshots(n: int, seed: int = 7) -> list[Snapshot]:
    """Snapshots with values on both sides of every threshold. Values are multiples of 1e-6
    of at least 1e-4, so Python's repr of each is one the engine's parser reads."""
    rng = random.Random(seed)

    def value(scale: float = 1.0) -> float:
        return rng.randint(100, 1_000_000) / 1e6 * scale

    return [{"ts": "2024-01-02T21:00:00Z", "symbol": f"S{i % 50}",
             "drift_score": value(), "volatility": value(0.6), "coherence": value(),
             "frs": value(), "meta_reliability": value()} for i in range(n)]


def policy_text(n_rules: int) -> str:
    """A safety policy of `n_rules` one-comparison rules: the v2.0 rails, then the same rails
    again with thresholds moved by a thousandth per round."""
    lines = ["apiVersion: fuggerbot/v1", "kind: SafetyPolicy",
             "metadata: {name: bench, version: 1.0.0}", "spec:", "  rules:"]
    for i in range(n_rules):
        fact, op, thr, action = _BASE[i % 5]
        thr = thr if i < 5 else round(thr + (i // 5) * 0.001, 6)
        lines.append(f"    - id: r{i}\n      when: {{fact: {fact}, op: \"{op}\", value: {thr}}}"
                     f"\n      action: {action}")
    return "\n".join(lines) + "\n"


def plain(policy: Policy) -> Contender:
    """Every rule's condition as a Python expression, compiled once into one function."""
    tests = ", ".join(f"({_py(r.when)}, {r.id!r})" for r in policy.rules)
    source = f"lambda s: frozenset(rule for hit, rule in ({tests},) if hit)"
    fn: Contender = eval(compile(source, "<plain>", "eval"))  # our own generated text
    return fn


def _py(cond: Condition) -> str:
    if isinstance(cond, Leaf):
        return f"s[{cond.fact!r}] {cond.op} {cond.value!r}"
    if isinstance(cond, AnyOf | AllOf):
        joiner = " or " if isinstance(cond, AnyOf) else " and "
        return "(" + joiner.join(_py(c) for c in cond.items) + ")"
    raise ValueError("the bench's policies use comparisons, any and all only")


def _dr(cond: Condition) -> str:
    if isinstance(cond, Leaf):
        return f'{{"{_OPS[cond.op]}":{{"{cond.fact}":{cond.value!r}}}}}'
    if isinstance(cond, AnyOf | AllOf):
        op = "$or" if isinstance(cond, AnyOf) else "$and"
        return f'{{"{op}":[{",".join(_dr(c) for c in cond.items)}]}}'
    raise ValueError("the bench's policies use comparisons, any and all only")


def raw(policy: Policy, tag: str) -> tuple[Contender, Callable[[], None]]:
    """The minimal C-API path, and a function that deletes its rulesets."""
    facts = tuple(dict.fromkeys(f for r in policy.rules for f in r.facts))
    chunks: list[list[int]] = [[]]
    used = 0
    for i, r in enumerate(policy.rules):
        n = comparisons(r.when)
        if chunks[-1] and used + n > MAX_COMPARISONS:
            chunks.append([])
            used = 0
        chunks[-1].append(i)
        used += n
    names = {f"r{i}": r.id for i, r in enumerate(policy.rules)}
    handles = []
    for k, chunk in enumerate(chunks):
        body = ",".join(f'"r{i}":{{"all":[{{"m":{{"$and":[{{"fb":1}},'
                        f'{_dr(policy.rules[i].when)}]}}}}]}}' for i in chunk)
        handles.append(dre.create_ruleset(f"bench-raw-{tag}-{k}", "{" + body + "}"))
    template = '{"sid":"0","id":%d,"fb":1,' + ",".join(f'"{f}":%r' for f in facts) + "}"
    counter = iter(range(1, 1 << 62))
    assert_fact, retract = dre.assert_fact, dre.retract_fact
    start, more = dre.start_action_for_state, dre.complete_and_start_action

    def fire(s: Snapshot) -> frozenset[str]:
        fact = template % (next(counter), *[s[f] for f in facts])
        fired: list[str] = []
        for handle in handles:
            code, state = assert_fact(handle, fact)
            if code == 0:
                result = start(handle, state)
                while result:
                    message = result[1] if isinstance(result, tuple) else result
                    fired.append(message[2:message.index('"', 2)])
                    result = more(handle, state)
            retract(handle, fact)
        return frozenset(names[k] for k in fired)

    def close() -> None:
        for h in handles:
            dre.delete_ruleset(h)

    return fire, close


def expected_action(policy: Policy, fired: frozenset[str]) -> str:
    """The most restrictive action among fired rules, by the engine's one order."""
    from engine.actions import Action, most_restrictive
    return most_restrictive(Action(r.action) for r in policy.rules if r.id in fired).value
