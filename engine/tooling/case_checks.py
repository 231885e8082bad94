"""What a test case names that the policy set and the fact catalogue do not know.

A case whose facts hold a misspelt fact passes for the wrong reason (the fact it meant is
missing, so the policy fails closed), and one that expects a rule id no policy has can never
pass: both are errors found before any case runs, naming the nearest known names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from engine.catalogue import CATALOGUE, ENVELOPE_KEYS, unknown_key_message, unknown_keys
from engine.names import did_you_mean
from engine.policy.model import PolicySet
from engine.policy.problems import Problem
from engine.tooling.cases import Case

#: Deciding "rules" that are not rules of a policy: a fact that failed closed, and the
#: approval policy's manual mode.
_FINDING = re.compile(r"fact-(missing|invalid|stale):(?P<fact>.+)")
_BUILT_IN_RULES = ("mode-manual",)


def case_problems(cases: Iterable[Case], policy_set: PolicySet) -> list[Problem]:
    """Every unknown fact in a case's facts and every unknown rule id in its expectation."""
    rule_ids = {r.id for p in policy_set.policies for r in p.rules} | set(_BUILT_IN_RULES)
    problems: list[Problem] = []
    for case in cases:
        label = f"case {case.name!r}"
        for key in unknown_keys(dict(case.facts)):
            problems.append(Problem(case.pos, f"{label}: facts: {unknown_key_message(key)}"))
        named = ([("expect.rule", case.expect.rule)] if case.expect.rule else []) + [
            ("expect.fired", r) for r in case.expect.fired or ()]
        for field, rule in named:
            message = _unknown_rule(rule, rule_ids)
            if message:
                problems.append(Problem(case.pos, f"{label}: {field}: {message}"))
    return problems


def _unknown_rule(rule: str, rule_ids: set[str]) -> str:
    finding = _FINDING.fullmatch(rule)
    if finding is not None:
        fact = finding["fact"]
        if fact in CATALOGUE or fact in ENVELOPE_KEYS:
            return ""
        hint = did_you_mean(fact, [*CATALOGUE, *ENVELOPE_KEYS])
        return f"{rule!r} names no fact" + (f"; {hint}" if hint else "")
    if rule in rule_ids:
        return ""
    hint = did_you_mean(rule, rule_ids)
    return (f"no policy of the set has a rule {rule!r}" + (f"; {hint}" if hint else "")
            + " (a case expecting it can never pass)")
