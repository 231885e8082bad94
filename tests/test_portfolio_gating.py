"""Gating a plan by per-symbol safety verdicts."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.actions import Action
from engine.portfolio.book import Book
from engine.portfolio.gating import (
    UNNAMED_RULE,
    VERDICT_INVALID,
    VERDICT_MISSING,
    GatedPlan,
    HeldLine,
    Verdict,
    gate_plan,
)
from engine.portfolio.planner import PlanLine

NOW = "2024-03-11T12:00:00Z"
BOOK = Book(cash=1_000.0, positions={"A": 100, "B": 50, "C": 0, "D": 7}, as_of=NOW)


def line(symbol: str, side: str, shares: int, price: float) -> PlanLine:
    return PlanLine(symbol, side, shares, price, shares * price, "rebalance")  # type: ignore[arg-type]


SELL_A = line("A", "SELL", 30, 10.0)
SELL_B = line("B", "SELL", 10, 20.0)
BUY_C = line("C", "BUY", 20, 5.0)
BUY_D = line("D", "BUY", 5, 100.0)
LINES = [BUY_C, SELL_A, BUY_D, SELL_B]


def verdicts(**by_symbol: Verdict) -> dict[str, Verdict]:
    base: dict[str, Verdict] = {s: (Action.ALLOW, None) for s in "ABCD"}
    return base | by_symbol


def test_allow_keeps_every_line_sells_first() -> None:
    gated = gate_plan(LINES, BOOK, verdicts())
    assert gated == GatedPlan(
        plan=(SELL_A, SELL_B, BUY_C, BUY_D), held=(), exits=(), unexited=gated.unexited
    )
    assert dict(gated.unexited) == {}


def test_halt_holds_every_line_of_the_symbol() -> None:
    gated = gate_plan(
        LINES,
        BOOK,
        verdicts(A=(Action.HALT, "drift-spike-halt"), C=(Action.HALT, "drift-spike-halt")),
    )
    assert gated.plan == (SELL_B, BUY_D)
    assert gated.held == (
        HeldLine(SELL_A, "drift-spike-halt", Action.HALT),
        HeldLine(BUY_C, "drift-spike-halt", Action.HALT),
    )


def test_flatten_replaces_sells_with_an_exit_of_the_whole_position() -> None:
    gated = gate_plan(LINES, BOOK, verdicts(A=(Action.FLATTEN, "vol-flatten")))
    exit_a = PlanLine("A", "SELL", 100, 10.0, 1_000.0, "flatten: vol-flatten")
    assert gated.exits == (exit_a,)
    assert gated.plan == (exit_a, SELL_B, BUY_C, BUY_D)
    assert SELL_A not in gated.plan and gated.held == ()


def test_flatten_holds_a_buy_and_still_exits() -> None:
    # D is held (7 shares, not a round lot): the exit sells exactly 7, at the plan's price.
    gated = gate_plan(LINES, BOOK, verdicts(D=(Action.FLATTEN, "vol-flatten")))
    assert gated.held == (HeldLine(BUY_D, "vol-flatten", Action.FLATTEN),)
    assert gated.exits == (PlanLine("D", "SELL", 7, 100.0, 700.0, "flatten: vol-flatten"),)
    assert BUY_D not in gated.plan and gated.exits[0] in gated.plan


def test_flatten_of_a_symbol_not_held_only_holds_its_buy() -> None:
    gated = gate_plan(LINES, BOOK, verdicts(C=(Action.FLATTEN, "r")))
    assert gated.exits == ()
    assert gated.held == (HeldLine(BUY_C, "r", Action.FLATTEN),)


def test_flatten_without_a_line_exits_at_the_given_price_or_reports_it() -> None:
    book = Book(cash=0.0, positions={"A": 100, "E": 3}, as_of=NOW)
    v = verdicts(E=(Action.FLATTEN, "r"))
    gated = gate_plan([SELL_A], book, v, prices={"E": 40.0})
    assert gated.exits == (PlanLine("E", "SELL", 3, 40.0, 120.0, "flatten: r"),)
    assert gated.plan == (SELL_A, gated.exits[0])
    for prices in (None, {}, {"E": float("nan")}, {"E": 0.0}):
        gated = gate_plan([SELL_A], book, v, prices=prices)
        assert gated.exits == () and gated.plan == (SELL_A,)
        assert dict(gated.unexited) == {"E": "no usable price for the exit"}


@pytest.mark.parametrize("action", [Action.BLOCK_NEW, Action.WAIT_CONFIRMATION])
def test_block_new_and_wait_keep_sells_and_hold_buys(action: Action) -> None:
    v = {s: (action, "low-confidence") for s in "ABCD"}
    gated = gate_plan(LINES, BOOK, v)
    assert gated.plan == (SELL_A, SELL_B)
    assert gated.held == (
        HeldLine(BUY_C, "low-confidence", action),
        HeldLine(BUY_D, "low-confidence", action),
    )


def test_a_symbol_without_a_verdict_is_held_whole() -> None:
    v = verdicts()
    del v["A"], v["C"]
    gated = gate_plan(LINES, BOOK, v)
    assert gated.plan == (SELL_B, BUY_D)
    assert gated.held == (
        HeldLine(SELL_A, VERDICT_MISSING, Action.HALT),
        HeldLine(BUY_C, VERDICT_MISSING, Action.HALT),
    )


@pytest.mark.parametrize(
    "bad", ["allow", ("allow", None), (Action.ALLOW,), (Action.ALLOW, 3), None]
)
def test_a_malformed_verdict_is_held_whole(bad: Any) -> None:
    gated = gate_plan([SELL_A, BUY_C], BOOK, verdicts(A=bad, C=bad))
    assert gated.plan == ()
    assert {(h.rule, h.action) for h in gated.held} == {(VERDICT_INVALID, Action.HALT)}


def test_a_restrictive_verdict_without_a_rule_still_names_one() -> None:
    gated = gate_plan([BUY_C], BOOK, verdicts(C=(Action.BLOCK_NEW, None)))
    assert gated.held == (HeldLine(BUY_C, UNNAMED_RULE, Action.BLOCK_NEW),)


# --- properties ------------------------------------------------------------------------

SYMBOLS = [f"S{i}" for i in range(6)]


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[PlanLine], Book, dict[str, Any]]:
    positions = {s: draw(st.integers(0, 500)) for s in SYMBOLS}
    lines = []
    for s in draw(st.lists(st.sampled_from(SYMBOLS), unique=True)):
        held = positions[s]
        side = "SELL" if held > 0 and draw(st.booleans()) else "BUY"
        shares = draw(st.integers(1, held)) if side == "SELL" else draw(st.integers(1, 500))
        lines.append(line(s, side, shares, draw(st.floats(min_value=0.5, max_value=500.0))))
    verdict = st.one_of(
        st.tuples(st.sampled_from(list(Action)), st.one_of(st.none(), st.text(max_size=5))),
        st.just("garbage"),
    )
    v = draw(st.dictionaries(st.sampled_from(SYMBOLS), verdict))
    return lines, Book(cash=0.0, positions=positions, as_of=NOW), v


@settings(max_examples=200, deadline=None)
@given(cases(), st.dictionaries(st.sampled_from(SYMBOLS), st.floats(0.5, 500.0)))
def test_gating_never_lets_a_held_or_forbidden_line_out(
    case: tuple[list[PlanLine], Book, dict[str, Any]], prices: dict[str, float]
) -> None:
    lines, book, v = case
    gated = gate_plan(lines, book, v, prices=prices)

    def action_of(symbol: str) -> Action | None:
        verdict = v.get(symbol)
        ok = isinstance(verdict, tuple) and isinstance(verdict[0], Action)
        return verdict[0] if ok else None  # type: ignore[index]

    assert not {h.line for h in gated.held} & set(gated.plan)
    for out in gated.plan:
        action = action_of(out.symbol)
        assert action is not None and action is not Action.HALT
        if out.side == "BUY":
            assert action is Action.ALLOW
        if action is Action.FLATTEN:
            assert out.side == "SELL" and out.shares == book.shares(out.symbol)
    # Every line goes out, is held, or is a sell superseded by its symbol's exit.
    for original in lines:
        superseded = original.side == "SELL" and action_of(original.symbol) is Action.FLATTEN
        in_plan = original in gated.plan
        in_held = any(h.line is original for h in gated.held)
        assert in_plan + in_held + superseded == 1
    for h in gated.held:
        assert h.rule
        expected = action_of(h.line.symbol)
        assert h.action is (expected or Action.HALT)
    # Exits: exactly the held shares of each symbol to flatten that has a price.
    for s in SYMBOLS:
        if action_of(s) is Action.FLATTEN and book.shares(s) > 0:
            exits = [e for e in gated.exits if e.symbol == s]
            if exits:
                assert exits[0].shares == book.shares(s) and exits[0] in gated.plan
            else:
                assert s in gated.unexited
    assert set(gated.exits) <= set(gated.plan)
    keys = [(out.side == "BUY", out.symbol) for out in gated.plan]
    assert keys == sorted(keys)
