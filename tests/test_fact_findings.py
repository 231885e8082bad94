"""What a decision says about a fact it could not use: the finding names the fact, the problem
and, in words a person acts on, what is wrong with the value. In process, on the real rules."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import SAFETY_YAML

from engine.actions import Action
from engine.clock import Clock, ClockKind
from engine.evaluator import SafetyEvaluator
from engine.facts import Duplicated, facts_hash, parse_snapshot
from engine.policy.loader import load_policy_set
from engine.timeutil import parse_utc

TS = "2025-03-04T15:30:00Z"
CALM: dict[str, Any] = {"ts": TS, "symbol": "SP500", "drift_score": 0.1, "volatility": 0.12,
                        "coherence": 0.9, "frs": 0.9, "meta_reliability": 0.9}
MISSING = object()

#: A fact the safety policy reads, written wrongly, and what the decision says about it.
VOLATILITY: list[tuple[Any, str, str]] = [
    (MISSING, "missing", "the snapshot has no volatility"),
    (None, "missing", "volatility is null"),
    (math.nan, "invalid", "volatility is NaN, not a finite number"),
    (math.inf, "invalid", "volatility is Infinity, not a finite number"),
    (-math.inf, "invalid", "volatility is -Infinity, not a finite number"),
    ("0.5", "invalid", "volatility must be a number (fraction per year), got a string '0.5'"),
    (True, "invalid", "volatility must be a number (fraction per year), got a boolean true"),
    ([0.5], "invalid", "volatility must be a number (fraction per year), got a list [0.5]"),
    ({"v": 1}, "invalid", "unexpected key(s) ['v']; a dated fact is {value, as_of}"),
    ([0.1] * 30, "invalid", "volatility must be a number (fraction per year), got a list "
                            "[0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0..."),
    (10**400, "invalid",
     "volatility = an integer of 401 digits is too large to be a fraction per year"),
    (2**53, "invalid",
     "volatility = an integer of 16 digits is too large to be a fraction per year"),
    (-(2**53), "invalid",
     "volatility = an integer of 16 digits is too large to be a fraction per year"),
    (35, "invalid", "volatility = 35 is outside its range 0..5 (fraction per year)"),
    ({"as_of": TS}, "missing", "volatility has no value"),
    ({"value": None, "as_of": TS}, "missing", "volatility is null"),
    ({"value": math.nan}, "invalid", "volatility is NaN, not a finite number"),
    ({"value": 0.2, "as_of": "2025-03-03T15:29:59Z"}, "stale",
     "volatility is 86401s old; the policy allows 1d"),
    ({"value": 0.2, "as_of": "2025-03-03T14:30:00Z"}, "stale",
     "volatility is 25h old; the policy allows 1d"),
    ({"value": 0.2, "as_of": "2025-03-03T15:29:00Z"}, "stale",
     "volatility is 1441m old; the policy allows 1d"),
    ({"value": 0.2, "as_of": "2025-03-01T15:30:00Z"}, "stale",
     "volatility is 3d old; the policy allows 1d"),
    ({"value": 0.2, "as_of": "2025-03-04T15:30:01Z"}, "invalid",
     "as_of 2025-03-04T15:30:01Z is after the snapshot's ts 2025-03-04T15:30:00Z"),
    ({"value": 0.2, "as_of": "yesterday"}, "invalid",
     "as_of: 'yesterday' is not an ISO-8601 timestamp"),
    (Duplicated([0.9, 0.1]), "invalid",
     "volatility is given 2 times (0.9, 0.1); which one holds would be a guess"),
    ({"value": Duplicated([0.2, 0.3])}, "invalid",
     "volatility.value is given 2 times (0.2, 0.3); which one holds would be a guess"),
    ({"value": 0.2, "as_of": Duplicated([TS, TS])}, "invalid",
     f"volatility.as_of is given 2 times ('{TS}', '{TS}'); which one holds would be a guess"),
]


@pytest.fixture(scope="module")
def evaluator() -> Iterator[SafetyEvaluator]:
    e = SafetyEvaluator(load_policy_set([str(SAFETY_YAML)]))
    yield e
    e.close()


def with_fact(name: str, value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    snap = dict(CALM if base is None else base)
    if value is MISSING:
        snap.pop(name, None)
    else:
        snap[name] = value
    return snap


@pytest.mark.parametrize(("value", "problem", "detail"), VOLATILITY,
                         ids=[str(i) for i in range(len(VOLATILITY))])
def test_a_bad_fact_is_named_with_what_is_wrong(evaluator: SafetyEvaluator, value: Any,
                                                problem: str, detail: str) -> None:
    d = evaluator.decide(with_fact("volatility", value))
    assert d.action is Action.HALT
    assert [(f.fact, f.problem, f.rule, f.detail) for f in d.findings] == [
        ("volatility", problem, f"fact-{problem}:volatility", detail)]


ENVELOPE: list[tuple[str, Any, str, str]] = [
    ("ts", MISSING, "fact-missing:ts", "the snapshot has no ts"),
    ("ts", Duplicated([TS, TS]), "fact-invalid:ts",
     f"ts is given 2 times ('{TS}', '{TS}'); which one holds would be a guess"),
    ("symbol", MISSING, "fact-missing:symbol", "the snapshot has no symbol"),
    ("symbol", 500, "fact-invalid:symbol", "symbol must be a non-empty string, got 500"),
    ("symbol", Duplicated(["A", "B"]), "fact-invalid:symbol",
     "symbol is given 2 times ('A', 'B'); which one holds would be a guess"),
]


@pytest.mark.parametrize(("key", "value", "rule", "detail"), ENVELOPE,
                         ids=[f"{e[0]}-{i}" for i, e in enumerate(ENVELOPE)])
def test_a_bad_envelope_is_named_with_what_is_wrong(evaluator: SafetyEvaluator, key: str,
                                                    value: Any, rule: str, detail: str) -> None:
    d = evaluator.decide(with_fact(key, value))
    assert d.action is Action.HALT
    assert [(f.rule, f.detail) for f in d.findings] == [(rule, detail)]
    # A snapshot without a usable symbol or ts is recorded as such, not under a guess.
    assert d.symbol == (None if key == "symbol" else "SP500")
    assert d.ts == (None if key == "ts" else TS)


@pytest.mark.parametrize(("raw", "kind"), [(None, "null"), ([1], "a list"), ("x", "a string"),
                                           (0.5, "a number"), (False, "a boolean")])
def test_a_snapshot_that_is_no_object_is_recorded_as_given(evaluator: SafetyEvaluator,
                                                           raw: object, kind: str) -> None:
    d = evaluator.decide(raw)
    assert (d.findings[0].rule, d.findings[0].detail) == (
        "fact-invalid:snapshot", f"a snapshot is a JSON object, not {kind}")
    assert d.facts == {"value": raw}
    assert (d.symbol, d.ts) == (None, None)


FLAG_POLICY = """\
apiVersion: fuggerbot/v1
kind: SafetyPolicy
metadata: {name: flag-safety, version: 1.0.0}
spec:
  max_fact_age: 1h
  rules:
    - id: empty-book-block
      when: {fact: book_empty, op: "==", value: true}
      action: block_new
    - id: stale-book-block
      when: {fact: days_since_rebalance, op: ">", value: 400}
      action: block_new
    - id: halted-symbol-halt
      when: {fact: safety_action, op: "==", value: halt}
      action: halt
"""
FLAG_CALM: dict[str, Any] = {"ts": TS, "symbol": "SP500", "book_empty": False,
                             "days_since_rebalance": 10, "safety_action": "allow"}
FLAGS: list[tuple[str, Any, str]] = [
    ("book_empty", 1, "book_empty must be true or false, got a number 1"),
    ("book_empty", "yes", "book_empty must be true or false, got a string 'yes'"),
    ("book_empty", {"value": {"a": 1}}, 'book_empty must be true or false, got an object '
                                        '{"a": 1}'),
    ("days_since_rebalance", 2.5, "days_since_rebalance must be a whole number of days, "
                                  "got 2.5"),
    ("days_since_rebalance", -1, "days_since_rebalance = -1 is outside its range 0..inf (days)"),
    ("days_since_rebalance", 2.0**53, "days_since_rebalance = 9007199254740992.0 is too "
                                      "large to be a count of days"),
    ("days_since_rebalance", -(2.0**53), "days_since_rebalance = -9007199254740992.0 is too "
                                         "large to be a count of days"),
    ("safety_action", 5, "safety_action must be a string, got a number 5"),
    ("safety_action", "stop", "safety_action = 'stop' is not one of halt, flatten, block_new, "
                              "wait_confirmation, allow"),
]


@pytest.fixture(scope="module")
def flag_evaluator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SafetyEvaluator]:
    path: Path = tmp_path_factory.mktemp("flags") / "flags.yaml"
    path.write_text(FLAG_POLICY, encoding="utf-8")
    e = SafetyEvaluator(load_policy_set([str(path)]))
    yield e
    e.close()


@pytest.mark.parametrize(("fact", "value", "detail"), FLAGS,
                         ids=[f"{f[0]}-{i}" for i, f in enumerate(FLAGS)])
def test_a_flag_count_or_word_of_the_wrong_kind_is_named(flag_evaluator: SafetyEvaluator,
                                                         fact: str, value: Any,
                                                         detail: str) -> None:
    d = flag_evaluator.decide(with_fact(fact, value, FLAG_CALM))
    assert d.action is Action.HALT
    assert [(f.rule, f.detail) for f in d.findings] == [(f"fact-invalid:{fact}", detail)]


def test_flags_counts_and_words_reach_their_rules_as_given(
        flag_evaluator: SafetyEvaluator) -> None:
    """A count written as a float (401.0) is the whole number it stands for, and a dated flag
    is its value."""
    assert flag_evaluator.decide(FLAG_CALM).action is Action.ALLOW
    d = flag_evaluator.decide({**FLAG_CALM, "days_since_rebalance": 401.0,
                               "book_empty": {"value": True, "as_of": TS},
                               "safety_action": "halt"})
    assert [(f.rule, dict(f.observed)) for f in d.fired] == [
        ("empty-book-block", {"book_empty": True}),
        ("stale-book-block", {"days_since_rebalance": 401}),
        ("halted-symbol-halt", {"safety_action": "halt"})]
    assert type(d.fired[1].observed["days_since_rebalance"]) is int


def test_on_the_wall_clock_a_snapshot_is_aged_against_now(
        flag_evaluator: SafetyEvaluator) -> None:
    """Live, a snapshot older than the policy's max_fact_age is stale as a whole, and one
    dated ahead of now by more than the allowed skew cannot be true; both name the times."""
    ts = parse_utc(TS)
    old = flag_evaluator.decide(FLAG_CALM, clock=Clock(ClockKind.WALL, ts + timedelta(hours=2)))
    assert [(f.rule, f.detail) for f in old.findings] == [
        ("fact-stale:ts", "the snapshot (ts 2025-03-04T15:30:00Z) is 2h old at "
                          "2025-03-04T17:30:00Z; the policy allows 1h")]
    assert old.findings[0].needed_by == ("empty-book-block", "stale-book-block",
                                         "halted-symbol-halt")
    fresh = flag_evaluator.decide(FLAG_CALM, clock=Clock(ClockKind.WALL, ts + timedelta(hours=1)))
    assert (fresh.action, fresh.findings) == (Action.ALLOW, ())
    ahead = flag_evaluator.decide(FLAG_CALM,
                                  clock=Clock(ClockKind.WALL, ts - timedelta(seconds=6)))
    assert [(f.rule, f.detail) for f in ahead.findings] == [
        ("fact-invalid:ts", "ts 2025-03-04T15:30:00Z is 6s ahead of the clock "
                            "(2025-03-04T15:29:54Z); the policy allows 5s of clock skew")]
    near = flag_evaluator.decide(FLAG_CALM,
                                 clock=Clock(ClockKind.WALL, ts - timedelta(seconds=5)))
    assert (near.action, near.findings) == (Action.ALLOW, ())
    half = flag_evaluator.decide(FLAG_CALM, clock=Clock(
        ClockKind.WALL, ts - timedelta(milliseconds=5500)))
    assert [f.detail for f in half.findings] == [
        "ts 2025-03-04T15:30:00Z is 5.5s ahead of the clock (2025-03-04T15:29:54.500000Z); "
        "the policy allows 5s of clock skew"]


RANGED_POLICY = """\
apiVersion: fuggerbot/v1
kind: SafetyPolicy
metadata: {name: ranged-safety, version: 1.0.0}
spec:
  rules:
    - id: drift-halt
      when: {fact: drift_score, op: ">=", value: 0.8}
      action: halt
    - id: price-block
      when: {fact: price, op: ">", value: 1000000}
      action: block_new
    - id: loss-block
      when: {fact: daily_pnl_pct, op: "<", value: -5}
      action: block_new
"""


@pytest.mark.parametrize(("fact", "value", "problem"), [
    ("drift_score", 1.0000001, "invalid"), ("drift_score", -1e-9, "invalid"),
    ("drift_score", 1.0, None), ("drift_score", 0.0, None),
    ("price", -0.5, "invalid"), ("price", 1e300, None), ("price", math.inf, "invalid"),
    ("daily_pnl_pct", -100.5, "invalid"), ("daily_pnl_pct", 1e300, None),
    ("daily_pnl_pct", -100.0, None),
])
def test_every_number_fact_keeps_its_catalogue_range(tmp_path: Path, fact: str, value: float,
                                                     problem: str | None) -> None:
    """A plain float just outside a fact's range is invalid, one on its edge is a value, and
    a fact with no upper bound takes any finite number: a fresh evaluator each time, so the
    ranges it works out when it is built are the ones checked."""
    path = tmp_path / "ranged.yaml"
    path.write_text(RANGED_POLICY, encoding="utf-8")
    evaluator = SafetyEvaluator(load_policy_set([str(path)]))
    try:
        calm = {"ts": TS, "symbol": "SP500", "drift_score": 0.1, "price": 10.0,
                "daily_pnl_pct": 0.0}
        d = evaluator.decide({**calm, fact: value})
    finally:
        evaluator.close()
    assert [(f.rule, f.problem) for f in d.findings] == (
        [] if problem is None else [(f"fact-{problem}:{fact}", problem)])
    fired = {"drift_score": value >= 0.8, "price": value > 1e6,
             "daily_pnl_pct": value < -5}[fact] and problem is None
    assert [f.rule for f in d.fired] == (
        [{"drift_score": "drift-halt", "price": "price-block",
          "daily_pnl_pct": "loss-block"}[fact]] if fired else [])


def test_the_facts_hash_is_of_the_facts_not_of_how_they_were_written() -> None:
    """The hash a decision records for its facts is the SHA-256 of their canonical JSON:
    the same whatever the key order, so a replay finds the very facts again."""
    one = {"symbol": "SP500", "volatility": {"value": 0.2, "as_of": TS}, "frs": [1.5, "x"]}
    other = {"frs": [1.5, "x"], "volatility": {"as_of": TS, "value": 0.2}, "symbol": "SP500"}
    canonical = ('{"frs":[1.5,"x"],"symbol":"SP500","volatility":{"as_of":"' + TS +
                 '","value":0.2}}')
    assert facts_hash(one) == facts_hash(other) == hashlib.sha256(
        canonical.encode("utf-8")).hexdigest()
    assert parse_snapshot(one).facts_hash == facts_hash(one)
