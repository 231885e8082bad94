"""The compiled rules (durable-rules underneath) against the plain-Python reference."""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.evaluator import SafetyEvaluator
from engine.policy.model import OPS, AllOf, AnyOf, Condition, Leaf, NotOf, PolicySet, Scalar
from engine.policy.problems import Position
from engine.rules.durable_backend import MAX_COMPARISONS, CompiledRules, EngineError, RuleSpec
from engine.rules.reference import holds

HERE = Position("generated.yaml", 1, 1)
NUMERIC_FACTS = ("drift_score", "volatility", "coherence", "frs", "meta_reliability",
                 "expected_return", "days_since_rebalance")
#: Thresholds and values share this pool so that values land exactly on thresholds often;
#: it holds the forms the engine's number parser is picky about (1e-05, 1e-07, 1e+16).
POOL: tuple[float, ...] = (
    0, 1, 2, 30, 0.0, 1.0, -1.0, -0.25, 1e-7, 2e-7, 1.5e-7, 1e-05, 0.0001, 0.35, 0.3999999,
    0.4, 0.5, 0.5000001, 0.7999999, 0.8, 0.1 + 0.2, 0.3, 1e16, 123456789.125,
)


def leaf(fact: str, op: str, value: Scalar | tuple[Scalar, ...]) -> Leaf:
    return Leaf(fact, op, value, HERE)  # type: ignore[arg-type]


numbers = st.one_of(st.sampled_from(POOL),
                    st.floats(-2.0, 2.0, allow_nan=False, allow_infinity=False))
leaves = st.builds(
    lambda fact, op, one, many: leaf(fact, op, tuple(many) if op in ("in", "not_in") else one),
    st.sampled_from(NUMERIC_FACTS),
    st.sampled_from(OPS),
    numbers,
    st.lists(numbers, min_size=1, max_size=4),
)
conditions: st.SearchStrategy[Condition] = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda cs: AllOf(tuple(cs), HERE)),
        st.lists(children, min_size=1, max_size=3).map(lambda cs: AnyOf(tuple(cs), HERE)),
        children.map(lambda c: NotOf(c, HERE)),
    ),
    max_leaves=8,
)
rule_lists = st.lists(conditions, min_size=1, max_size=8).map(
    lambda cs: [RuleSpec(f"rule-{i}", c) for i, c in enumerate(cs)])
fact_values = st.dictionaries(st.sampled_from(NUMERIC_FACTS), numbers)


def expected(rules: Sequence[RuleSpec], values: dict[str, Scalar]) -> frozenset[str]:
    return frozenset(r.id for r in rules if holds(r.when, values))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules=rule_lists, samples=st.lists(fact_values, min_size=1, max_size=5))
def test_compiled_rules_agree_with_reference(rules: list[RuleSpec],
                                             samples: list[dict[str, Scalar]]) -> None:
    compiled = CompiledRules("prop", rules)
    try:
        for values in samples:
            assert compiled.fired(values) == expected(rules, values), values
    finally:
        compiled.close()


# --- hand-picked cases the property might only reach by luck --------------------------


def test_absent_fact_fires_neither_polarity() -> None:
    rules = [
        RuleSpec("ge", leaf("drift_score", ">=", 0.8)),
        RuleSpec("not-ge", NotOf(leaf("drift_score", ">=", 0.8), HERE)),
        RuleSpec("not-in", leaf("drift_score", "not_in", (0.1, 0.2))),
        RuleSpec("other", leaf("volatility", "<", 1.0)),
    ]
    compiled = CompiledRules("absent", rules)
    try:
        assert compiled.fired({}) == frozenset()
        assert compiled.fired({"volatility": 0.2}) == {"other"}
        assert compiled.fired({"drift_score": 0.9}) == {"ge", "not-in"}
        assert compiled.fired({"drift_score": 0.1}) == {"not-ge"}
    finally:
        compiled.close()


@pytest.mark.parametrize("x", [1e-7, 1e-05, 5e-324, 1e16, 1.7976931348623157e308, 0.1 + 0.2])
def test_awkward_numbers_round_trip_exactly(x: float) -> None:
    rules = [RuleSpec("eq", leaf("expected_return", "==", x)),
             RuleSpec("lt", leaf("expected_return", "<", x)),
             RuleSpec("gt", leaf("expected_return", ">", x))]
    compiled = CompiledRules("awkward", rules)
    try:
        assert compiled.fired({"expected_return": x}) == {"eq"}
        assert compiled.fired({"expected_return": 0.0}) == expected(rules, {"expected_return": 0.0})
    finally:
        compiled.close()


def test_boolean_and_string_facts() -> None:
    rules = [
        RuleSpec("empty", leaf("book_empty", "==", True)),
        RuleSpec("not-empty", leaf("book_empty", "!=", True)),
        RuleSpec("severe", leaf("safety_action", "in", ("halt", "flatten"))),
        RuleSpec("mild", leaf("safety_action", "not_in", ("halt", "flatten"))),
        RuleSpec("exact", leaf("safety_action", "==", "allow")),
    ]
    compiled = CompiledRules("typed", rules)
    try:
        cases: list[dict[str, Scalar]] = [
            {"book_empty": True, "safety_action": "halt"},
            {"book_empty": False, "safety_action": "allow"},
            {"book_empty": False, "safety_action": "block_new"},
            {"safety_action": "flatten"},
            {},
        ]
        for values in cases:
            assert compiled.fired(values) == expected(rules, values), values
    finally:
        compiled.close()


def test_unwritable_values_raise_engine_error() -> None:
    """A value the engine cannot read exactly is refused in words, never guessed at; the
    largest exact integer still decides."""
    compiled = CompiledRules("unwritable", [RuleSpec("r", leaf("drift_score", ">=", 0.8))])
    try:
        for bad, message in ((float("nan"), "drift_score: nan is not a finite number"),
                             (float("inf"), "drift_score: inf is not a finite number"),
                             (2**53, f"drift_score: integer {2**53} is too large for the "
                                     "rule engine"),
                             (-(2**60), f"drift_score: integer {-(2**60)} is too large for "
                                        "the rule engine"),
                             ([0.9], "drift_score: list value cannot be evaluated")):
            with pytest.raises(EngineError) as refused:
                compiled.fired({"drift_score": bad})  # type: ignore[dict-item]
            assert str(refused.value) == message
        assert compiled.fired({"drift_score": 2**53 - 1}) == {"r"}
        assert compiled.fired({"drift_score": 0}) == frozenset()
    finally:
        compiled.close()


def test_a_list_threshold_needs_in_or_not_in() -> None:
    with pytest.raises(EngineError, match="a list value needs 'in' or 'not_in'"):
        CompiledRules("listed", [RuleSpec("r", leaf("drift_score", "<", (0.1, 0.2)))])


@pytest.mark.parametrize("cond", [
    leaf("drift_score", "in", tuple(float(i) / 100 for i in range(MAX_COMPARISONS + 1))),
    NotOf(leaf("drift_score", "not_in", tuple(float(i) / 100
                                              for i in range(MAX_COMPARISONS + 1))), HERE),
    AnyOf((leaf("frs", "in", tuple(float(i) / 100 for i in range(MAX_COMPARISONS))),
           AllOf((leaf("volatility", ">", 0.1),), HERE)), HERE),
], ids=["in", "not-not-in", "any-all"])
def test_rule_over_the_comparison_limit_is_refused(cond: Condition) -> None:
    with pytest.raises(EngineError) as refused:
        CompiledRules("too-big", [RuleSpec("big", cond)])
    assert str(refused.value) == (f"rule 'big' has {MAX_COMPARISONS + 1} comparisons; at most "
                                  f"{MAX_COMPARISONS}")


def test_rules_of_exactly_the_limit_fill_rulesets_one_by_one() -> None:
    """Rules of MAX_COMPARISONS comparisons each take a ruleset of their own, and every one
    of them still fires: the engine fires nothing past 64 matching comparisons."""
    values = tuple(float(i) / 100 for i in range(MAX_COMPARISONS))
    rules = [RuleSpec(f"full-{i}", leaf("drift_score", "in", values)) for i in range(3)]
    rules.append(RuleSpec("small", leaf("drift_score", "<", 0.5)))
    compiled = CompiledRules("full", rules)
    try:
        assert compiled.fired({"drift_score": 0.47}) == {r.id for r in rules}
        assert compiled.fired({"drift_score": 0.6}) == frozenset()
    finally:
        compiled.close()


# --- compiling more than once ----------------------------------------------------------


def test_same_set_compiled_twice_and_versions_side_by_side() -> None:
    v1 = [RuleSpec("drift-halt", leaf("drift_score", ">=", 0.8)),
          RuleSpec("vol-flatten", leaf("volatility", ">=", 0.35))]
    v2 = [RuleSpec("drift-halt", leaf("drift_score", ">=", 0.5)),
          RuleSpec("vol-flatten", leaf("volatility", ">=", 0.6))]
    first = CompiledRules("core-safety", v1)
    second = CompiledRules("core-safety", v1)
    newer = CompiledRules("core-safety", v2)
    try:
        values: dict[str, Scalar] = {"drift_score": 0.6, "volatility": 0.4}
        assert first.fired(values) == {"vol-flatten"}
        assert second.fired(values) == {"vol-flatten"}
        assert newer.fired(values) == {"drift-halt"}
        # each compilation keeps its own state: evaluating one changes nothing in another
        for _ in range(3):
            assert newer.fired({"drift_score": 0.9, "volatility": 0.9}) == {"drift-halt",
                                                                             "vol-flatten"}
            assert first.fired(values) == {"vol-flatten"}
        first.close()
        assert second.fired(values) == {"vol-flatten"}
        assert newer.fired(values) == {"drift-halt"}
    finally:
        first.close()
        second.close()
        newer.close()


def test_many_compilations_release_their_rulesets() -> None:
    """A closed compilation has handed its rulesets back to the engine (a decision on it is
    refused, never guessed), and so has one that is merely dropped."""
    rules = [RuleSpec("r", leaf("frs", "<", 0.4))]
    for _ in range(300):
        compiled = CompiledRules("churn", rules)
        assert compiled.fired({"frs": 0.1}) == {"r"}
        compiled.close()
        with pytest.raises(EngineError):
            compiled.fired({"frs": 0.1})
    dropped = CompiledRules("dropped", rules)
    release = dropped._finalizer
    assert release.alive
    del dropped
    gc.collect()
    assert not release.alive


# --- a hundred rules --------------------------------------------------------------------


def hundred_rules() -> list[RuleSpec]:
    rules = []
    for i in range(100):
        threshold = i / 100
        if i % 3 == 0:
            cond: Condition = leaf("volatility", ">=", threshold)
        elif i % 3 == 1:
            cond = AllOf((leaf("volatility", ">=", threshold),
                          NotOf(leaf("coherence", ">", 0.9), HERE)), HERE)
        else:
            cond = AnyOf((leaf("volatility", ">=", threshold),
                          leaf("frs", "in", (0.123, 0.456))), HERE)
        rules.append(RuleSpec(f"rule-{i:03d}", cond))
    return rules


@pytest.mark.parametrize(
    "values",
    [
        {"volatility": 0.995, "coherence": 0.0, "frs": 0.123},
        {"volatility": 0.5, "coherence": 0.5, "frs": 0.9},
        {"volatility": 0.5, "coherence": 0.95, "frs": 0.456},
        {"volatility": 0.0, "coherence": 0.95, "frs": 0.9},
        {"volatility": 0.3},
        {},
    ],
)
def test_hundred_rules(values: dict[str, Scalar]) -> None:
    rules = hundred_rules()
    compiled = CompiledRules("hundred", rules)
    try:
        assert compiled.fired(values) == expected(rules, values)
    finally:
        compiled.close()


def test_hundred_rules_all_match() -> None:
    rules = hundred_rules()
    compiled = CompiledRules("hundred", rules)
    try:
        fired = compiled.fired({"volatility": 1.0, "coherence": 0.5, "frs": 0.9})
        assert fired == {r.id for r in rules}
        assert len(fired) == 100
    finally:
        compiled.close()


def test_hundred_identical_rules_all_match() -> None:
    rules = [RuleSpec(f"same-{i}", leaf("drift_score", ">=", 0.8)) for i in range(100)]
    compiled = CompiledRules("identical", rules)
    try:
        assert compiled.fired({"drift_score": 0.8}) == {r.id for r in rules}
        assert compiled.fired({"drift_score": 0.7}) == frozenset()
    finally:
        compiled.close()


# --- threads ----------------------------------------------------------------------------

THREAD_SNAPSHOTS = [
    {"ts": "2025-03-04T15:30:00Z", "symbol": s, "drift_score": d, "volatility": v,
     "coherence": c, "frs": f, "meta_reliability": m}
    for s, d, v, c, f, m in [
        ("SP500", 0.1, 0.12, 0.9, 0.9, 0.9),
        ("SP500", 0.85, 0.5, 0.3, 0.2, 0.9),
        ("WTI", 0.1, 0.36, 0.9, 0.9, 0.1),
        ("WTI", 0.1, 0.12, 0.5, 0.9, 0.9),
        ("NASDAQ", 0.8, 0.1, 0.9, 0.39, 0.9),
        ("NASDAQ", 0.79, 0.349, 0.51, 0.4, 0.4),
    ]
]


Outcome = tuple[str | None, str, str | None, tuple[str, ...]]


def outcome(evaluator: SafetyEvaluator, snap: object) -> Outcome:
    d = evaluator.decide(snap)
    return (d.symbol, d.action.value, d.deciding_rule.rule if d.deciding_rule else None,
            tuple(f.rule for f in d.fired))


@pytest.fixture
def eager_thread_switching() -> Iterator[None]:
    """Switch threads as often as the interpreter can, so evaluations interleave inside the
    engine calls instead of running one after the other."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


@pytest.mark.usefixtures("eager_thread_switching")
def test_four_threads_on_one_evaluator(safety_set: PolicySet) -> None:
    evaluator = SafetyEvaluator(safety_set)
    try:
        work = THREAD_SNAPSHOTS * 50
        sequential = [outcome(evaluator, s) for s in work]
        assert len(set(sequential)) == len(THREAD_SNAPSHOTS)
        start = threading.Barrier(4)

        def run(offset: int) -> list[Outcome]:
            start.wait()
            # each thread walks the work in a different order, so the threads interleave
            order = work[offset:] + work[:offset]
            results = [outcome(evaluator, s) for s in order]
            return results[len(work) - offset:] + results[:len(work) - offset]

        with ThreadPoolExecutor(max_workers=4) as pool:
            parallel = list(pool.map(run, [0, 1, 2, 3]))
        for results in parallel:
            assert results == sequential
    finally:
        evaluator.close()


@pytest.mark.usefixtures("eager_thread_switching")
def test_four_threads_on_one_compiled_set() -> None:
    rules = hundred_rules()
    compiled = CompiledRules("threads", rules)
    samples: list[dict[str, Scalar]] = [
        {"volatility": v / 40, "coherence": (v % 7) / 6, "frs": (0.123, 0.5)[v % 2]}
        for v in range(41)]
    try:
        sequential = [compiled.fired(s) for s in samples]
        assert sequential == [expected(rules, s) for s in samples]
        start = threading.Barrier(4)

        def run(_: int) -> list[frozenset[str]]:
            start.wait()
            return [compiled.fired(s) for _round in range(5) for s in samples]

        with ThreadPoolExecutor(max_workers=4) as pool:
            parallel = list(pool.map(run, range(4)))
        for results in parallel:
            assert results == sequential * 5
    finally:
        compiled.close()
