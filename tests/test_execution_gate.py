"""The order gate, the latched trading state and the approval queue, on real policies, real
SQLite audit stores and a real paper broker in tmp_path."""

from __future__ import annotations

import inspect
import multiprocessing
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.actions import Action, OrderAction
from engine.audit.store import AuditStore
from engine.clock import Clock, ClockKind
from engine.cycle import CompiledSet, run_cycle
from engine.decision import Decision
from engine.evaluator import SafetyEvaluator
from engine.execution import approvals
from engine.execution import state as trading
from engine.execution.approval_policy import ApprovalEvaluator
from engine.execution.broker import OrderStatus
from engine.execution.gate import GateResult, OrderIntent, Verdict, gate
from engine.execution.gateway import Controls, Gateway, latest_status
from engine.execution.order_policy import OrderPolicyEvaluator
from engine.execution.paper import PaperBroker, init_account
from engine.execution.records import ORDER
from engine.execution.state import StateView, TradingState
from engine.policy.loader import policy_set_from_texts
from engine.policy.model import PolicySet
from engine.timeutil import format_utc

#: These tests judge the rails, trading state and approvals: the set has no order policy.
NO_ORDER_POLICY = OrderPolicyEvaluator(PolicySet(()))
NONE: dict[str, Any] = {"controls": NO_ORDER_POLICY, "order_facts": {}}

POLICIES = REPO_ROOT / "policies"
MODES = ("autonomous", "semi_autonomous", "manual")
NOW = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)
#: Decisions made at NOW on the snapshot clock, as a replay of that moment would.
AT_NOW = Clock(ClockKind.SNAPSHOT, NOW)
SYMBOL = "AAA"

# Which fact, set to which value, makes the default safety policy take each action.
ACTION_FACTS: dict[Action, tuple[dict[str, float], str | None]] = {
    Action.HALT: ({"drift_score": 0.9}, "drift-spike-halt"),
    Action.FLATTEN: ({"volatility": 0.4}, "high-volatility-flatten"),
    Action.BLOCK_NEW: ({"coherence": 0.4}, "coherence-break-block"),
    Action.WAIT_CONFIRMATION: ({"frs": 0.3}, "low-confidence-wait"),
    Action.ALLOW: ({}, None),
}


def snapshot(symbol: str, price: float, ts: datetime = NOW, /, **facts: float) -> dict[str, Any]:
    """A snapshot every rail allows, eligible to buy on an empty book, with `facts` changed."""
    return {"ts": format_utc(ts), "symbol": symbol, "price": price, "volatility": 0.2,
            "expected_return": 0.05, "drift_score": 0.1, "coherence": 0.8, "frs": 0.8,
            "meta_reliability": 0.8, **facts}


def policy_set(mode: str, *, rotation: bool = True) -> PolicySet:
    """The default policies with the approval policy's mode set to `mode`."""
    names = ("safety.yaml", "rotation.yaml", "approval.yaml") if rotation else \
        ("safety.yaml", "approval.yaml")
    sources = []
    for name in names:
        path = POLICIES / name
        text = path.read_text(encoding="utf-8")
        if name == "approval.yaml":
            assert "mode: semi_autonomous" in text
            text = text.replace("mode: semi_autonomous", f"mode: {mode}")
        sources.append((str(path), text))
    return policy_set_from_texts(sources)


@pytest.fixture(scope="module")
def evaluators() -> Iterator[dict[str, ApprovalEvaluator]]:
    made = {mode: ApprovalEvaluator(policy_set(mode, rotation=False)) for mode in MODES}
    yield made
    for e in made.values():
        e.close()


@pytest.fixture(scope="module")
def decisions(safety_evaluator: SafetyEvaluator) -> dict[Action, Decision]:
    out = {}
    for action, (facts, rule) in ACTION_FACTS.items():
        d = safety_evaluator.decide(snapshot(SYMBOL, 100.0, **facts), clock=AT_NOW)
        assert d.action is action
        assert (d.deciding_rule.rule if d.deciding_rule else None) == rule
        out[action] = d
    return out


@pytest.fixture(scope="module")
def compiled() -> Iterator[dict[str, CompiledSet]]:
    made = {mode: CompiledSet(policy_set(mode)) for mode in MODES}
    yield made
    for c in made.values():
        c.close()


ACTIVE = StateView(TradingState.ACTIVE, None, format_utc(NOW), "no symbol restricted")
HALTED = StateView(TradingState.HALTED, "drift-spike-halt", format_utc(NOW),
                   "drift-spike-halt fired for BBB")


def held_order(side: str) -> OrderIntent:
    """A small order in a symbol the book holds: no approval rule of the policy reads it."""
    return OrderIntent(SYMBOL, side, 10, 100.0, held_shares=100)


# -- the gate ------------------------------------------------------------------------------

SEND, DENIED, PENDING = Verdict.SEND, Verdict.DENIED, Verdict.PENDING_APPROVAL
RAIL = {a: rule for a, (_, rule) in ACTION_FACTS.items()}

# (mode, action, side) -> (verdict, rule), for a small order in a held symbol.
EXPECTED: dict[tuple[str, Action, str], tuple[Verdict, str | None]] = {}
for _mode in MODES:
    for _action in Action:
        for _side in ("BUY", "SELL"):
            if _action is Action.HALT:
                want: tuple[Verdict, str | None] = (DENIED, RAIL[_action])
            elif _side == "BUY" and _action in (Action.FLATTEN, Action.BLOCK_NEW):
                want = (DENIED, RAIL[_action])
            elif _side == "BUY" and _action is Action.WAIT_CONFIRMATION:
                want = (PENDING, RAIL[_action])
            elif _mode == "manual":
                want = (PENDING, "mode-manual")
            else:
                want = (SEND, None)
            EXPECTED[(_mode, _action, _side)] = want


@pytest.mark.parametrize(("mode", "action", "side"), sorted(EXPECTED, key=str))
def test_gate_verdict_for_every_action_side_and_mode(
        mode: str, action: Action, side: str, evaluators: dict[str, ApprovalEvaluator],
        decisions: dict[Action, Decision]) -> None:
    result = gate(held_order(side), decisions[action], ACTIVE, evaluators[mode], **NONE)
    assert (result.verdict, result.rule) == EXPECTED[(mode, action, side)], result.reason
    assert result.reason


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("side", ["BUY", "SELL"])
def test_an_approved_order_still_passes_the_rails_as_they_are_now(
        mode: str, action: Action, side: str, evaluators: dict[str, ApprovalEvaluator],
        decisions: dict[Action, Decision]) -> None:
    result = gate(held_order(side), decisions[action], ACTIVE, evaluators[mode], approved=True,
                  **NONE)
    if action is Action.HALT or (side == "BUY" and action in (Action.FLATTEN,
                                                               Action.BLOCK_NEW)):
        assert (result.verdict, result.rule) == (DENIED, RAIL[action])
    else:
        assert result.verdict is SEND


def test_semi_autonomous_rules_decide_which_orders_wait(
        evaluators: dict[str, ApprovalEvaluator], decisions: dict[Action, Decision]) -> None:
    semi, allow = evaluators["semi_autonomous"], decisions[Action.ALLOW]

    def check(order: OrderIntent) -> tuple[Verdict, str | None]:
        result = gate(order, allow, ACTIVE, semi, **NONE)
        return result.verdict, result.rule

    assert check(OrderIntent(SYMBOL, "BUY", 10, 100.0, 0)) == (PENDING, "new-symbol-approval")
    assert check(OrderIntent(SYMBOL, "BUY", 2500, 100.0, 10)) == (SEND, None)  # exactly 250k
    assert check(OrderIntent(SYMBOL, "BUY", 2501, 100.0, 10)) == (PENDING,
                                                                  "large-order-approval")
    assert check(OrderIntent(SYMBOL, "SELL", 9000, 100.0, 9000)) == (SEND, None)
    # An order whose price is not a number cannot be judged, let alone sent.
    assert check(OrderIntent(SYMBOL, "BUY", 10, float("nan"), 10)) == (DENIED, "order-invalid")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("side", ["BUY", "SELL"])
@pytest.mark.parametrize("approved", [False, True])
def test_a_latched_halt_denies_everything(
        mode: str, action: Action, side: str, approved: bool,
        evaluators: dict[str, ApprovalEvaluator], decisions: dict[Action, Decision]) -> None:
    result = gate(held_order(side), decisions[action], HALTED, evaluators[mode],
                  approved=approved, **NONE)
    assert result.verdict is DENIED
    assert result.rule == "drift-spike-halt"  # the rule that latched the halt
    assert "halted" in result.reason


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("approved", [False, True])
def test_an_order_without_its_symbols_decision_is_denied(
        mode: str, approved: bool, evaluators: dict[str, ApprovalEvaluator],
        safety_evaluator: SafetyEvaluator) -> None:
    other = safety_evaluator.decide(snapshot("ZZZ", 10.0), clock=AT_NOW)
    for side in ("BUY", "SELL"):
        for decision in (None, other):
            result = gate(held_order(side), decision, ACTIVE, evaluators[mode],
                          approved=approved, **NONE)
            assert (result.verdict, result.rule) == (DENIED, "decision-missing")
            assert SYMBOL in result.reason


def test_a_side_that_is_neither_buy_nor_sell_is_never_sent(
        evaluators: dict[str, ApprovalEvaluator], decisions: dict[Action, Decision]) -> None:
    # Fail closed: an order whose direction cannot be read must not pass as a reducing one.
    sent = []
    for mode in MODES:
        for action in Action:
            for side in ("buy", "Sell", "SHORT", ""):
                order = OrderIntent(SYMBOL, side, 10, 100.0, held_shares=0)
                if gate(order, decisions[action], ACTIVE, evaluators[mode],
                        **NONE).verdict is SEND:
                    sent.append(f"{side!r} under {action.value} ({mode})")
    assert sent == [], "sent: " + ", ".join(sent)


MALFORMED: dict[str, list[Any]] = {
    "shares": [0, -5, True, False, 2.5, 10.0, "10", None],
    "price": [0.0, -1.0, 0, float("inf"), float("nan"), True, "100", None],
    "held_shares": [-1, True, 1.5, "100", None],
}


@pytest.mark.parametrize(("field", "bad"), [(f, v) for f, vs in MALFORMED.items() for v in vs],
                         ids=repr)
def test_an_order_with_unusable_shares_price_or_holding_is_never_sent(
        field: str, bad: Any, evaluators: dict[str, ApprovalEvaluator],
        decisions: dict[Action, Decision]) -> None:
    """Zero, negative, fractional, boolean or missing quantities and prices: the gate cannot
    size such an order, so it is denied under every action and mode, approved or not."""
    for mode in MODES:
        for action in Action:
            for side in ("BUY", "SELL"):
                for approved in (False, True):
                    order = replace(held_order(side), **{field: bad})
                    result = gate(order, decisions[action], ACTIVE, evaluators[mode],
                                  approved=approved, **NONE)
                    assert (result.verdict, result.rule) == (DENIED, "order-invalid"), (
                        mode, action, side, approved, result)
                    assert field.replace("_", " ") in result.reason


def test_the_smallest_order_that_can_be_judged_goes_out(
        evaluators: dict[str, ApprovalEvaluator], decisions: dict[Action, Decision]) -> None:
    """One share at a price under one, in a symbol held once: nothing about it is malformed,
    and one share held makes the symbol held (no new-symbol approval)."""
    allow = decisions[Action.ALLOW]
    for side in ("BUY", "SELL"):
        tiny = OrderIntent(SYMBOL, side, 1, 0.5, held_shares=1)
        for mode in ("autonomous", "semi_autonomous"):
            result = gate(tiny, allow, ACTIVE, evaluators[mode], **NONE)
            assert (result.verdict, result.rule) == (SEND, None), (mode, result)
    fresh = OrderIntent(SYMBOL, "BUY", 1, 0.5, held_shares=0)
    result = gate(fresh, allow, ACTIVE, evaluators["semi_autonomous"], **NONE)
    assert (result.verdict, result.rule) == (PENDING, "new-symbol-approval")


BYPASS_WORDS = ("skip", "bypass", "force", "override", "unsafe", "unchecked", "ungated",
                "no_gate", "nogate", "trust", "dry", "direct", "raw", "admin")


def test_no_argument_skips_the_gate() -> None:
    def params(fn: Any) -> dict[str, inspect.Parameter]:
        return dict(inspect.signature(fn).parameters)

    for fn in (gate, Gateway.submit, Gateway.__init__, run_cycle):
        for name in params(fn):
            assert not any(w in name.lower() for w in BYPASS_WORDS), (fn.__qualname__, name)
    # The only optional knob of each is the person's approval, which the rails still check
    # (with, for the gateway, the price the approval is held against).
    assert [n for n, p in params(gate).items() if p.default is not p.empty] == ["approved"]
    assert [n for n, p in params(Gateway.submit).items()
            if p.default is not p.empty] == ["approved_item", "market_price"]


@dataclass(frozen=True)
class _Case:
    mode: str
    action: Action
    side: str
    approved: bool
    halted: bool
    shares: int
    held: int


@settings(max_examples=300, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture])
@given(case=st.builds(_Case, mode=st.sampled_from(MODES), action=st.sampled_from(list(Action)),
                 side=st.sampled_from(["BUY", "SELL"]), approved=st.booleans(),
                 halted=st.booleans(), shares=st.integers(1, 10_000),
                 held=st.integers(0, 10_000)))
def test_gate_never_lets_out_what_the_rails_forbid(
        case: _Case, evaluators: dict[str, ApprovalEvaluator],
        decisions: dict[Action, Decision]) -> None:
    order = OrderIntent(SYMBOL, case.side, case.shares, 100.0, case.held)
    result: GateResult = gate(order, decisions[case.action], HALTED if case.halted else ACTIVE,
                              evaluators[case.mode], approved=case.approved, **NONE)
    if result.verdict is not SEND:
        assert result.rule, result
        return
    assert not case.halted and case.action is not Action.HALT
    if case.side == "BUY":
        assert case.action is Action.ALLOW or (
            case.action is Action.WAIT_CONFIRMATION and case.approved)
    if case.mode == "manual":
        assert case.approved
    if case.mode == "semi_autonomous" and case.side == "BUY" and not case.approved:
        assert case.held > 0 and case.shares * 100.0 <= 250_000


def test_submit_with_an_item_nobody_approved_sends_nothing(
        tmp_path: Path, evaluators: dict[str, ApprovalEvaluator],
        decisions: dict[Action, Decision]) -> None:
    broker = PaperBroker(init_account(tmp_path / "paper.db", 1_000_000))
    order = OrderIntent(SYMBOL, "BUY", 10, 100.0, 0)  # a new symbol: semi-autonomous holds it
    with AuditStore(tmp_path / "audit.db") as store:
        gw = Gateway(store, broker, evaluators["semi_autonomous"],
                     controls=Controls.fresh(NO_ORDER_POLICY))
        queued = gw.submit(order, decisions[Action.ALLOW], ACTIVE, cid="o-1", now=NOW)
        assert (queued.status, queued.rule) == ("pending_approval", "new-symbol-approval")
        approvals.decide(store, "o-1", outcome="rejected", by="ann", now=NOW, reason="checked")
        waiting = gw.submit(order, decisions[Action.ALLOW], ACTIVE, cid="o-3", now=NOW)
        assert waiting.status == "pending_approval"
        # Naming an item that was rejected, is still waiting, or does not exist is no approval.
        sent = []
        for cid, item in (("o-1", "o-1"), ("o-3", "o-3"), ("o-2", "no-such-item")):
            out = gw.submit(order, decisions[Action.ALLOW], ACTIVE, cid=cid, now=NOW,
                            approved_item=item)
            if out.status in ("filled", "sent"):
                sent.append(f"{item}: {out.status} ({out.reason})")
        assert sent == []
    assert broker.account_summary().orders == ()
    assert broker.positions() == {}


# -- the trading state ---------------------------------------------------------------------

def test_a_halt_latches_until_a_named_person_resumes_it() -> None:
    ts = format_utc(NOW)
    halting = {"AAA": (Action.HALT, "drift-spike-halt"), "BBB": (Action.ALLOW, None)}
    calm = {"AAA": (Action.ALLOW, None), "BBB": (Action.ALLOW, None)}
    halted = trading.derive(trading.INITIAL, halting, ts)
    assert (halted.state, halted.rule) == (TradingState.HALTED, "drift-spike-halt")
    for later in (calm, {"AAA": (Action.FLATTEN, "high-volatility-flatten")}, {}):
        assert trading.derive(halted, later, "2025-03-04T15:00:00Z") == halted

    for by, reason, words in (("", "drift is back", "--by"), ("  ", "x", "--by"),
                              ("ann", "", "--reason"), ("ann", " ", "--reason"),
                              ("ann", "drift is back", "still fires")):
        with pytest.raises(trading.ResumeRefused, match=words):
            trading.resume(halted, halting if words == "still fires" else calm, by=by,
                           reason=reason, ts=ts)
    resumed = trading.resume(halted, calm, by="ann", reason="drift is back", ts=ts)
    # Flatten or block_new make the book reduce; that passes without a person, a halt does not.
    reducing = trading.derive(trading.INITIAL, {"AAA": (Action.FLATTEN,
                                                        "high-volatility-flatten")}, ts)
    assert (reducing.state, reducing.rule) == (TradingState.REDUCING, "high-volatility-flatten")
    assert trading.derive(reducing, calm, ts).state is TradingState.ACTIVE
    assert trading.derive(reducing, halting, ts).state is TradingState.HALTED
    assert resumed.state is TradingState.ACTIVE and "ann" in resumed.reason
    with pytest.raises(trading.ResumeRefused, match="not halted"):
        trading.resume(resumed, calm, by="ann", reason="again", ts=ts)


def test_state_changes_are_recorded_and_a_halt_cancels_open_orders(
        tmp_path: Path, compiled: dict[str, CompiledSet]) -> None:
    broker = PaperBroker(init_account(tmp_path / "paper.db", 200_000), fill_on_submit=False)
    auto = compiled["autonomous"]
    t1, t2, t3 = NOW, NOW + timedelta(hours=1), NOW + timedelta(hours=2)
    with AuditStore(tmp_path / "audit.db") as store:
        first = run_cycle(auto, store, broker, [snapshot("AAA", 100.0, t1),
                                                snapshot("BBB", 50.0, t1)])
        sent = [o.client_id for o in first.outcomes if o.status == "sent"]
        assert len(sent) == 2 and first.state.state is TradingState.ACTIVE
        assert [o.client_id for o in broker.open_orders()] == sent

        second = run_cycle(auto, store, broker, [snapshot("AAA", 100.0, t2, drift_score=0.85),
                                                 snapshot("BBB", 50.0, t2)])
        assert (second.state.state, second.state.rule) == (TradingState.HALTED,
                                                           "drift-spike-halt")
        assert broker.open_orders() == []
        for cid in sent:
            placed = broker.order(cid)
            assert placed is not None and placed.status is OrderStatus.CANCELLED
            assert latest_status(store, cid) == "cancelled"
        assert all(o.status == "denied" for o in second.outcomes)

        # The drift falls: the halt holds, nothing is sent.
        third = run_cycle(auto, store, broker, [snapshot("AAA", 100.0, t3),
                                                snapshot("BBB", 50.0, t3)])
        assert third.state.state is TradingState.HALTED
        assert third.outcomes and all(o.status == "denied" and o.rule == "drift-spike-halt"
                                      for o in third.outcomes)
        assert trading.load(store).state is TradingState.HALTED

        view = trading.resume(trading.load(store), {}, by="ann", reason="drift is back",
                              ts=format_utc(t3))
        assert trading.record(store, view, trading.load(store), extra={"by": "ann"})
        fourth = run_cycle(auto, store, broker, [snapshot("AAA", 100.0, t3),
                                                 snapshot("BBB", 50.0, t3)])
        assert fourth.state.state is TradingState.ACTIVE
        assert any(o.status == "sent" for o in fourth.outcomes)

        changes = [(r.body["state"], r.body["previous"])
                   for r in store.iter_records(trading.KIND)]
    assert changes == [("ACTIVE", "ACTIVE"), ("HALTED", "ACTIVE"), ("ACTIVE", "HALTED")]


# -- the approval queue --------------------------------------------------------------------

def _queue(store: AuditStore, item_id: str, at: datetime = NOW,
           ttl: float = 900.0) -> approvals.ApprovalItem:
    item = approvals.request(store, item_id=item_id, symbol="AAA", side="BUY", shares=10,
                             price=100.0, rule="new-symbol-approval", decision_id="d-1",
                             requested_at=at, ttl_seconds=ttl)
    assert item is not None
    return item


def test_an_item_is_queued_once_and_decided_once_by_a_named_person(tmp_path: Path) -> None:
    with AuditStore(tmp_path / "audit.db") as store:
        _queue(store, "o-1")
        assert approvals.request(store, item_id="o-1", symbol="AAA", side="BUY", shares=10,
                                 price=100.0, rule="r", decision_id="d-1", requested_at=NOW,
                                 ttl_seconds=900) is None
        for nobody in ("", "   "):
            with pytest.raises(approvals.ApprovalError, match="--by"):
                approvals.decide(store, "o-1", outcome="approved", by=nobody, now=NOW,
                                 reason="checked")
        with pytest.raises(approvals.ApprovalError, match="no approval item"):
            approvals.decide(store, "o-404", outcome="approved", by="ann", now=NOW,
                             reason="checked")
        done = approvals.decide(store, "o-1", outcome="approved", by="ann", now=NOW,
                                reason="checked")
        assert (done.outcome, done.decided_by) == ("approved", "ann")
        for outcome in ("approved", "rejected"):
            with pytest.raises(approvals.ApprovalError, match="already approved by ann"):
                approvals.decide(store, "o-1", outcome=outcome, by="bob", now=NOW, reason="checked")
        assert store.count(approvals.DECIDED) == 1
        assert approvals.pending(store) == []


def test_an_expired_item_is_rejected_automatically_and_recorded(tmp_path: Path) -> None:
    with AuditStore(tmp_path / "audit.db") as store:
        _queue(store, "o-1")
        _queue(store, "o-2", at=NOW + timedelta(minutes=10))
        assert approvals.expire_due(store, NOW + timedelta(minutes=14, seconds=59)) == []
        expired = approvals.expire_due(store, NOW + timedelta(minutes=15))
        assert [(i.item_id, i.outcome) for i in expired] == [("o-1", "expired")]
        rec = [r for r in store.find("o-1") if r.kind == approvals.DECIDED]
        assert len(rec) == 1 and rec[0].body["outcome"] == "expired"
        assert [i.item_id for i in approvals.pending(store)] == ["o-2"]
        with pytest.raises(approvals.ApprovalError, match="already expired"):
            approvals.decide(store, "o-1", outcome="approved", by="ann",
                             now=NOW + timedelta(minutes=16), reason="checked")
        # Approving past the time-to-live is refused, and the item is expired on the spot.
        with pytest.raises(approvals.ApprovalError, match="expired"):
            approvals.decide(store, "o-2", outcome="approved", by="ann",
                             now=NOW + timedelta(minutes=30), reason="checked")
        after = approvals.get(store, "o-2")
        assert after is not None and after.outcome == "expired"


def test_a_cycle_expires_unapproved_orders_and_logs_them(
        tmp_path: Path, compiled: dict[str, CompiledSet]) -> None:
    broker = PaperBroker(init_account(tmp_path / "paper.db", 200_000))
    semi = compiled["semi_autonomous"]
    with AuditStore(tmp_path / "audit.db") as store:
        first = run_cycle(semi, store, broker, [snapshot("AAA", 100.0),
                                                snapshot("BBB", 50.0)])
        queued = sorted(o.client_id for o in first.outcomes if o.status == "pending_approval")
        assert len(queued) == 2
        later = NOW + timedelta(minutes=16)
        second = run_cycle(semi, store, broker, [snapshot("AAA", 100.0, later),
                                                 snapshot("BBB", 50.0, later)])
        assert sorted(i.item_id for i in second.expired) == queued
        for cid in queued:
            assert latest_status(store, cid) == "expired"
            item = approvals.get(store, cid)
            assert item is not None and (item.outcome, item.decided_by) == ("expired",
                                                                            "fuggerbot")
    assert broker.account_summary().orders == ()


def _race_decide(path: str, item_id: str, by: str, start: Any, results: Any) -> None:
    start.wait()
    with AuditStore(path) as store:
        try:
            approvals.decide(store, item_id, outcome="approved", by=by, now=NOW, reason="checked")
            results.put((item_id, by, "won"))
        except approvals.ApprovalError as e:
            results.put((item_id, by, f"lost: {e}"))


def test_two_processes_approving_the_same_item_at_once_exactly_one_wins(
        tmp_path: Path) -> None:
    path = str(tmp_path / "audit.db")
    items = [f"o-{n}" for n in range(4)]
    with AuditStore(path) as store:
        for item in items:
            _queue(store, item)
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    names = ("ann", "bob", "cy")
    for item in items:
        start = ctx.Barrier(len(names))
        procs = [ctx.Process(target=_race_decide, args=(path, item, by, start, results))
                 for by in names]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
    outcomes = [results.get(timeout=10) for _ in range(len(items) * len(names))]
    with AuditStore(path) as store:
        for item in items:
            mine = [o for o in outcomes if o[0] == item]
            winners = [o[1] for o in mine if o[2] == "won"]
            assert len(winners) == 1, mine
            assert all("decided" in o[2] or "already" in o[2] for o in mine if o[2] != "won")
            decided = [r for r in store.find(item) if r.kind == approvals.DECIDED]
            assert [r.body["by"] for r in decided] == winners


def test_an_order_approved_after_a_halt_is_denied_and_never_filled(
        tmp_path: Path, compiled: dict[str, CompiledSet]) -> None:
    broker = PaperBroker(init_account(tmp_path / "paper.db", 200_000))
    semi = compiled["semi_autonomous"]
    t2 = NOW + timedelta(minutes=1)
    t3 = NOW + timedelta(minutes=2)
    with AuditStore(tmp_path / "audit.db") as store:
        first = run_cycle(semi, store, broker, [snapshot("AAA", 100.0),
                                                snapshot("BBB", 50.0)])
        held = [o for o in first.outcomes if o.status == "pending_approval"]
        assert held and all(o.rule == "new-symbol-approval" for o in held)
        halt = run_cycle(semi, store, broker, [snapshot("AAA", 100.0, t2, drift_score=0.8),
                                               snapshot("BBB", 50.0, t2)])
        assert halt.state.state is TradingState.HALTED
        target = held[0].client_id
        approvals.decide(store, target, outcome="approved", by="ann", now=t2, reason="checked")

        after = run_cycle(semi, store, broker, [snapshot("AAA", 100.0, t3),
                                                snapshot("BBB", 50.0, t3)])
        mine = [o for o in after.outcomes if o.client_id == target]
        assert [(o.status, o.rule) for o in mine] == [("denied", "drift-spike-halt")]
        assert latest_status(store, target) == "denied"
        assert broker.order(target) is None
    assert broker.account_summary().orders == ()
    assert broker.positions() == {} and broker.cash() == 200_000


def test_a_replays_state_change_never_lifts_a_live_halt(
        tmp_path: Path, evaluators: dict[str, ApprovalEvaluator],
        decisions: dict[Action, Decision]) -> None:
    """A replay (`fugger run`) records its own book's trading state in the same store, under
    its run id. Its resume is not the live system's: the live halt holds and the gate denies."""
    with AuditStore(tmp_path / "audit.db") as store:
        assert trading.record(store, HALTED, trading.INITIAL)
        replay_resumed = StateView(TradingState.ACTIVE, None, format_utc(NOW),
                                   "resumed by ann: replay of 2008")
        store.append(*trading.change(replay_resumed, HALTED, run_id="run-1"))
        live = trading.load(store)
        assert live == HALTED
        assert trading.load(store, "run-1") == replay_resumed
        assert trading.load(store, "run-2") == trading.INITIAL
        for side in ("BUY", "SELL"):
            result = gate(held_order(side), decisions[Action.ALLOW], live,
                          evaluators["autonomous"], **NONE)
            assert (result.verdict, result.rule) == (DENIED, "drift-spike-halt")


def test_an_approval_taken_after_the_queue_was_read_is_seen_by_it(tmp_path: Path) -> None:
    """The queue a long run keeps catches up with the store: an item a person approves (from
    another process) after the run last looked is sent on the run's next look."""
    with AuditStore(tmp_path / "audit.db") as store:
        queue = approvals.ApprovalQueue(store)
        _queue(store, "o-1")
        _queue(store, "o-2")
        assert [i.item_id for i in queue.pending()] == ["o-1", "o-2"]
        assert queue.approved_unsent() == []
        with AuditStore(tmp_path / "audit.db") as elsewhere:
            approvals.decide(elsewhere, "o-2", outcome="approved", by="ann", reason="vetted",
                             now=NOW)
        assert [(i.item_id, i.decided_by) for i in queue.approved_unsent()] == [("o-2", "ann")]
        assert [i.item_id for i in queue.pending()] == ["o-1"]


@pytest.mark.parametrize("outcome", ["rejected", "expired"])
def test_a_rejected_or_expired_item_ends_its_order_at_the_time_it_was_decided(
        tmp_path: Path, outcome: str) -> None:
    """The execution log's last word on an order that never went out carries when it ended,
    who ended it and why, as `fugger audit` shows it."""
    later = NOW + timedelta(minutes=20)
    with AuditStore(tmp_path / "audit.db") as store:
        _queue(store, "o-1")
        if outcome == "rejected":
            approvals.decide(store, "o-1", outcome="rejected", by="ann", reason="too big",
                             now=NOW + timedelta(minutes=5))
            at, by, reason = NOW + timedelta(minutes=5), "ann", "too big"
        else:
            approvals.expire_due(store, later)
            due = format_utc(NOW + timedelta(minutes=15))
            at, by, reason = later, "fuggerbot", f"not decided before {due}"
        (order,) = [r.body for r in store.find("o-1") if r.kind == ORDER]
        assert order["ts"] == format_utc(at)
        assert (order["status"], order["reason"], order["client_id"]) == (outcome, reason,
                                                                           "o-1")
        assert order["summary"] == f"BUY 10 AAA: {outcome} by {by}"
        assert latest_status(store, "o-1") == outcome


# -- what a person reads of each verdict --------------------------------------------------------


def test_each_refusal_and_hold_says_why_in_words_a_person_reads(
        evaluators: dict[str, ApprovalEvaluator], decisions: dict[Action, Decision]) -> None:
    semi = evaluators["semi_autonomous"]
    since = format_utc(NOW)

    def judged(order: OrderIntent, action: Action = Action.ALLOW,
               state: StateView = ACTIVE, mode: str = "semi_autonomous",
               approved: bool = False) -> tuple[Verdict, str | None, str, int]:
        r = gate(order, decisions[action], state, evaluators[mode], approved=approved, **NONE)
        return r.verdict, r.rule, r.reason, r.approvers

    buy, sell = held_order("BUY"), held_order("SELL")
    assert judged(buy, Action.HALT) == (DENIED, "drift-spike-halt",
                                        "the rails halt this symbol", 1)
    assert judged(buy, Action.FLATTEN) == (
        DENIED, "high-volatility-flatten",
        "flatten: orders that open or grow a position are denied", 1)
    assert judged(buy, Action.BLOCK_NEW)[2] == \
        "block_new: orders that open or grow a position are denied"
    assert judged(buy, Action.WAIT_CONFIRMATION) == (
        PENDING, "low-confidence-wait", "held until a clear evaluation or a person's approval",
        semi.default_approvers)
    assert judged(buy, approved=True) == (SEND, None, "approved, and the rails allow it now", 1)
    assert judged(buy) == (SEND, None, "the rails and the approval policy allow it", 1)
    assert judged(OrderIntent(SYMBOL, "BUY", 2501, 100.0, 10)) == (
        PENDING, "large-order-approval", "the approval policy (semi_autonomous) asks for a "
                                         "person", 1)
    assert judged(OrderIntent(SYMBOL, "BUY", 10_001, 100.0, 10)) == (
        PENDING, "large-order-approval", "the approval policy (semi_autonomous) asks for 2 "
                                         "people", 2)
    assert judged(buy, mode="manual")[2:] == ("the approval policy (manual) asks for a person",
                                              1)

    halted = StateView(TradingState.HALTED, None, since, "drift-spike-halt fired for BBB")
    assert judged(sell, Action.ALLOW, halted) == (
        DENIED, "halt-latched", f"trading is halted since {since} (drift-spike-halt fired "
                                "for BBB); a person must resume it", 1)
    # A latch that names no rule is reported under the rule of the symbol's decision.
    assert judged(sell, Action.BLOCK_NEW, halted)[1] == "coherence-break-block"

    reducing = StateView(TradingState.REDUCING, None, since, "fills-reduce-only for AAA",
                         reduce_only=True)
    assert judged(buy, Action.ALLOW, reducing) == (
        DENIED, "reduce-only", f"the book is reduce-only since {since} (fills-reduce-only "
                               "for AAA); a person must re-enable it", 1)
    assert judged(sell, Action.ALLOW, reducing)[0] is SEND
    named = replace(reducing, rule="repeated-fills")
    assert judged(buy, Action.ALLOW, named)[1] == "repeated-fills"
    # Flatten or block_new reduce the book without latching reduce-only: a sale goes out.
    assert judged(buy, Action.ALLOW, replace(reducing, reduce_only=False))[0] is SEND

    killed = replace(ACTIVE, kills=(trading.KillScope(("AAA",), "BUY", since, "rita",
                                                      "feed looks wrong"),))
    assert judged(buy, Action.ALLOW, killed) == (
        DENIED, "kill-switch", f"killed for AAA (BUY orders) since {since} by rita: feed "
                               "looks wrong; a person must resume it", 1)
    assert judged(sell, Action.ALLOW, killed)[0] is SEND
    assert judged(buy, Action.ALLOW, replace(ACTIVE, kills=(trading.KillScope(
        ("BBB",), None, since, "rita", "other symbol"),)))[0] is SEND


CONTROL = """\
apiVersion: fuggerbot/v1
kind: OrderPolicy
metadata: {{name: desk-controls, version: 1.0.0}}
spec:
  rules:
    - id: desk-{rule}
      when: {{fact: order_notional, op: ">", value: 5000}}
      action: {action}
"""


@pytest.mark.parametrize(("action", "buy", "sell", "latch"), [
    ("halt", DENIED, DENIED, "halt"),
    ("reduce_only", DENIED, SEND, "reduce_only"),
    ("deny", DENIED, DENIED, None),
    ("require_approval", PENDING, PENDING, None),
])
def test_each_order_policy_action_stops_holds_or_latches_with_its_reason(
        action: str, buy: Verdict, sell: Verdict, latch: str | None,
        evaluators: dict[str, ApprovalEvaluator], decisions: dict[Action, Decision]) -> None:
    controls = OrderPolicyEvaluator(policy_set_from_texts(
        [("controls.yaml", CONTROL.format(action=action, rule=action.replace("_", "-")))]))
    rule = "desk-" + action.replace("_", "-")
    reason = f"order policy desk-controls: {rule} ({action})"
    try:
        for side, want in (("BUY", buy), ("SELL", sell)):
            order = held_order(side)  # 10 x 100: notional 1000
            facts = {"order_notional": 6000.0}
            r = gate(order, decisions[Action.ALLOW], ACTIVE, evaluators["autonomous"],
                     controls=controls, order_facts=facts)
            assert r.verdict is want, (side, r)
            assert r.latch == (OrderAction(latch) if latch else None), (side, r)
            assert r.controls is not None and r.controls.observed == facts
            if want is not SEND:
                assert (r.rule, r.reason) == (rule, reason)
            # What a person approved still meets the controls, except for approval itself.
            approved = gate(order, decisions[Action.ALLOW], ACTIVE, evaluators["autonomous"],
                            controls=controls, order_facts=facts, approved=True)
            assert approved.verdict is (SEND if want is PENDING else want)
            calm = gate(order, decisions[Action.ALLOW], ACTIVE, evaluators["autonomous"],
                        controls=controls, order_facts={"order_notional": 1000.0})
            assert (calm.verdict, calm.latch) == (SEND, None)
            assert calm.controls is not None and calm.controls.rule is None
    finally:
        controls.close()


def test_a_hold_asks_for_as_many_people_as_the_approval_policy_says(
        decisions: dict[Action, Decision]) -> None:
    """`approvers` of the approval policy's spec: a hold by the rails (wait_confirmation) or
    by an order-policy rule needs that many people, as a hold by an approval rule does."""
    text = (POLICIES / "approval.yaml").read_text(encoding="utf-8")
    assert "\n  mode: semi_autonomous\n" in text
    four_eyes = ApprovalEvaluator(policy_set_from_texts([(
        "approval.yaml", text.replace("\n  mode: semi_autonomous\n",
                                      "\n  mode: semi_autonomous\n  approvers: 2\n"))]))
    controls = OrderPolicyEvaluator(policy_set_from_texts(
        [("controls.yaml", CONTROL.format(action="require_approval", rule="big"))]))
    try:
        assert four_eyes.default_approvers == 2
        wait = gate(held_order("BUY"), decisions[Action.WAIT_CONFIRMATION], ACTIVE, four_eyes,
                    **NONE)
        assert (wait.verdict, wait.approvers) == (PENDING, 2)
        held = gate(held_order("SELL"), decisions[Action.ALLOW], ACTIVE, four_eyes,
                    controls=controls, order_facts={"order_notional": 6000.0})
        assert (held.verdict, held.rule, held.approvers) == (PENDING, "desk-big", 2)
    finally:
        four_eyes.close()
        controls.close()
