"""The execution log's sliding windows at their edges, to the microsecond: records written into
a real audit store, the log rebuilt from it as a live step does, the order's facts computed and
judged by the real gate with the shipped order policy (policies/pretrade.yaml) in durable-rules.
Then the log a run keeps in memory against the one rebuilt from the store, through a real
gateway and paper broker."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from engine.audit.store import AuditStore
from engine.decision import Decision
from engine.evaluator import SafetyEvaluator
from engine.execution.activity import LOOK_BACK, Activity, ExecutionLog
from engine.execution.approval_policy import ApprovalEvaluator
from engine.execution.gate import GateResult, OrderIntent, Verdict, gate
from engine.execution.gateway import Controls, Gateway
from engine.execution.order_facts import BookView, order_facts
from engine.execution.order_policy import OrderPolicyEvaluator
from engine.execution.paper import PaperBroker, init_account
from engine.execution.records import ORDER
from engine.execution.state import INITIAL
from engine.policy.loader import load_policy_set
from engine.policy.model import PolicySet
from engine.timeutil import format_utc, parse_utc
from tests.conftest import REPO_ROOT

T = parse_utc("2024-03-01T15:00:00Z")
US = timedelta(microseconds=1)
MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)
CALM = {"drift_score": 0.1, "volatility": 0.2, "coherence": 0.8, "frs": 0.8,
        "meta_reliability": 0.8}
#: Held already, well inside every size limit, at the reference price: only the log decides.
SELL_10 = OrderIntent("AAA", "SELL", 10, 100.0, 1000)
BOOK = BookView(cash=900_000.0, positions={"AAA": 1000}, prices={"AAA": 100.0})


@dataclass(frozen=True)
class Judge:
    """The shipped safety, approval and order policies, and a decision that allows AAA."""

    approval: ApprovalEvaluator
    controls: OrderPolicyEvaluator
    allows: Decision

    def __call__(self, log: ExecutionLog, order: OrderIntent = SELL_10,
                 now: datetime = T) -> GateResult:
        facts = order_facts(order, BOOK, log, Activity.fresh().marks, now)
        # No equity mark: the loss breakers cannot be judged and fail closed (deny). The
        # windows are read all the same; the deciding rule says which one stopped the order.
        return gate(order, self.allows, INITIAL, self.approval, controls=self.controls,
                    order_facts=facts)


@pytest.fixture(scope="module")
def judge() -> Iterator[Judge]:
    shipped = load_policy_set([str(REPO_ROOT / "policies" / name) for name in
                               ("safety.yaml", "approval.yaml", "pretrade.yaml")])
    safety = SafetyEvaluator(shipped)
    allows = safety.decide({"ts": format_utc(T), "symbol": "AAA", "price": 100.0, **CALM})
    made = Judge(ApprovalEvaluator(shipped), OrderPolicyEvaluator(shipped), allows)
    yield made
    for ev in (safety, made.approval, made.controls):
        ev.close()


def _rebuilt(store: AuditStore, *entries: tuple[timedelta, str, str, int, str],
             now: datetime = T) -> ExecutionLog:
    """Execution-log records (age before `now`, symbol, side, shares, status) in the store,
    then the log as a live step rebuilds it."""
    store.append_many([(ORDER, f"prior-{i}", {
        "run_id": None, "ts": format_utc(now - ago), "client_id": f"prior-{i}", "symbol": sym,
        "side": side, "shares": shares, "status": status})
        for i, (ago, sym, side, shares, status) in enumerate(entries)])
    return Activity.from_store(store, None, now).log


def _sent(n: int, ago: timedelta) -> list[tuple[timedelta, str, str, int, str]]:
    """`n` orders of another symbol, each a different size, sent `ago` before T."""
    return [(ago, "BBB", "BUY", i + 1, "submitting") for i in range(n)]


def _rules(result: GateResult) -> tuple[str | None, tuple[str, ...]]:
    assert result.controls is not None
    return result.controls.rule, result.controls.fired


@pytest.mark.parametrize(("ago", "fires"), [
    (MINUTE, False),          # exactly a minute old: out of the window
    (MINUTE - US, True),      # a microsecond younger: in
])
def test_orders_per_minute_window_edge(store: AuditStore, judge: Judge, ago: timedelta,
                                       fires: bool) -> None:
    log = _rebuilt(store, *_sent(30, ago))
    assert log.sent_within(T, MINUTE) == (30 if fires else 0)
    assert ("message-throttle-minute" in _rules(judge(log))[1]) is fires


@pytest.mark.parametrize(("ago", "fires"), [(SECOND, False), (SECOND - US, True)])
def test_orders_per_second_window_edge(store: AuditStore, judge: Judge, ago: timedelta,
                                       fires: bool) -> None:
    log = _rebuilt(store, *_sent(5, ago))
    assert log.sent_within(T, SECOND) == (5 if fires else 0)
    assert ("message-throttle-second" in _rules(judge(log))[1]) is fires


@pytest.mark.parametrize(("ago", "fires"), [
    (timedelta(seconds=10), True),          # exactly 10 s later: still a duplicate
    (timedelta(seconds=10) + US, False),
    (timedelta(0), True),                   # the same moment
])
def test_duplicate_window_edge(store: AuditStore, judge: Judge, ago: timedelta,
                               fires: bool) -> None:
    log = _rebuilt(store, (ago, "AAA", "SELL", 10, "submitting"),
                   (timedelta(seconds=1), "AAA", "SELL", 11, "submitting"),  # another size
                   (timedelta(seconds=1), "AAA", "BUY", 10, "submitting"))   # the other side
    assert log.seconds_since_same("AAA", "SELL", 10, T) == ago.total_seconds()
    assert ("duplicate-order" in _rules(judge(log))[1]) is fires


@pytest.mark.parametrize(("ago", "fires"), [(MINUTE, False), (MINUTE - US, True)])
def test_repeated_fills_window_edge(store: AuditStore, judge: Judge, ago: timedelta,
                                    fires: bool) -> None:
    log = _rebuilt(store, *[(ago, "AAA", "BUY", i + 1, "filled") for i in range(10)],
                   *[(timedelta(seconds=1), "BBB", "BUY", i + 1, "filled") for i in range(10)])
    assert log.fills_within("AAA", T, MINUTE) == (10 if fires else 0)
    assert log.fills_within("BBB", T, MINUTE) == 10
    assert ("repeated-execution-reduce-only" in _rules(judge(log))[1]) is fires


def test_the_same_order_is_looked_for_a_day_back() -> None:
    log = ExecutionLog()
    log.note_sent(T - LOOK_BACK - US, "AAA", "SELL", 10)
    assert log.seconds_since_same("AAA", "SELL", 10, T - US) == LOOK_BACK.total_seconds()
    assert log.seconds_since_same("AAA", "SELL", 10, T) is None
    assert log.seconds_since_same("AAA", "SELL", 10, T - LOOK_BACK - 2 * US) is None


def test_what_comes_after_now_is_not_counted(store: AuditStore, judge: Judge) -> None:
    later = -US  # a microsecond after T
    log = _rebuilt(store, *_sent(6, later), (later, "AAA", "SELL", 10, "submitting"),
                   *[(later, "AAA", "BUY", i + 1, "filled") for i in range(10)])
    assert log.recent("AAA", "SELL", 10, T) == (0, 0, 0, None)
    assert log.recent("AAA", "SELL", 10, T - later) == (7, 7, 10, 0.0)
    assert _rules(judge(log))[1] == ()


def test_an_order_past_the_controls_goes_on_to_the_approval_step(
        store: AuditStore, judge: Judge) -> None:
    """With the equity marks known, an order the log does not stop is sent."""
    log = _rebuilt(store, *_sent(29, MINUTE - US), *_sent(4, SECOND - US))
    marks = Activity.fresh().marks
    marks.mark(T - timedelta(days=1), 1_000_000.0)
    facts = order_facts(SELL_10, BOOK, log, marks, T)
    assert (facts["orders_last_minute"], facts["orders_last_second"]) == (34, 5)
    # 29 + 4 others and this one: over the minute's 30, at the second's 5.
    result = gate(SELL_10, judge.allows, INITIAL, judge.approval, controls=judge.controls,
                  order_facts=facts)
    assert (result.verdict, result.rule) == (Verdict.DENIED, "message-throttle-minute")
    quiet = order_facts(SELL_10, BOOK, _rebuilt(store, *_sent(4, SECOND - US), now=T + MINUTE),
                        marks, T + MINUTE)
    sent = gate(SELL_10, judge.allows, INITIAL, judge.approval, controls=judge.controls,
                order_facts=quiet)
    assert sent.verdict is Verdict.SEND, sent.reason


def test_a_log_kept_for_days_keeps_its_windows_and_forgets_the_rest() -> None:
    """Two days of an order every 10 s, noted as they happen, some a little late (out of
    order): the windows are right at every minute, and the first day is forgotten."""
    log = ExecutionLog()
    start = T - timedelta(days=2)
    steps = int(timedelta(days=2) / timedelta(seconds=10))
    for k in range(steps + 1):
        at = start + k * timedelta(seconds=10)
        log.note_sent(at, "AAA", "BUY", 1 + k % 3)
        if k % 6 == 5:  # a fill noted 5 s after a later order
            log.note_fill(at - timedelta(seconds=5), "AAA")
        if k % 360 == 0 and k:  # every hour, re-check the windows
            assert log.sent_within(at, MINUTE) == 6          # at, at-10 ... at-50
            assert log.sent_within(at, SECOND) == 1
            assert log.fills_within("AAA", at, MINUTE) == 1
            assert log.seconds_since_same("AAA", "BUY", 1 + k % 3, at) == 0.0
            assert log.seconds_since_same("AAA", "BUY", 1 + (k + 1) % 3, at) == 20.0
    assert log.recent("AAA", "BUY", 1 + steps % 3, T) == (6, 1, 1, 0.0)
    # What left the look-back is gone: a day and a bit of orders remain, not two days.
    assert log.sent_within(T, timedelta(days=3)) <= (86_400 + 120) // 10 + 1
    assert log.sent_within(T, timedelta(days=1)) == 86_400 // 10
    assert log.seconds_since_same("ZZZ", "BUY", 1, T) is None


def test_the_log_a_run_keeps_is_the_log_the_store_rebuilds(tmp_path: Path,
                                                           judge: Judge) -> None:
    """Orders sent through a real gateway and paper broker: the gateway's own log and the one a
    later step rebuilds from the audit store give the same windows."""
    init_account(tmp_path / "paper.db", 10_000_000.0, {"AAA": 100_000})
    broker = PaperBroker(tmp_path / "paper.db")
    autonomous = ApprovalEvaluator(PolicySet(()))
    activity = Activity.fresh()
    activity.prices["AAA"] = 100.0
    with AuditStore(tmp_path / "audit.db") as store:
        gw = Gateway(store, broker, autonomous, controls=Controls(
            judge.controls, activity.prices, activity.log, activity.marks))
        activity.marks.mark(T - timedelta(days=1), 20_000_000.0)
        sizes = (1, 2, 3, 1, 2, 3, 4)
        for i, shares in enumerate(sizes):
            at = T + timedelta(seconds=4 * i, microseconds=250_000)
            out = gw.submit(OrderIntent("AAA", "SELL", shares, 100.0, 100_000), judge.allows,
                            INITIAL, cid=f"c{i}", now=at)
            assert out.status in ("filled", "denied"), out.reason
        now = T + timedelta(seconds=30)
        rebuilt = Activity.from_store(store, None, now).log
        for shares in (1, 2, 3, 4, 5):
            assert rebuilt.recent("AAA", "SELL", shares, now) == \
                activity.log.recent("AAA", "SELL", shares, now)
        # Sent: the first three sizes, then the fourth order repeats size 1 twelve seconds
        # later (past the 10 s duplicate limit), and so on; nothing was stopped.
        assert activity.log.recent("AAA", "SELL", 4, now) == (7, 0, 7, pytest.approx(5.75))


def test_an_order_recorded_filled_twice_is_one_fill(store: AuditStore) -> None:
    """A resting order a cycle recorded as filled, and a cancellation that found it filled and
    recorded the fill too: one execution in the repeated-fills window."""
    fill = {"run_id": None, "ts": format_utc(T - SECOND), "client_id": "o-1", "symbol": "AAA",
            "side": "BUY", "shares": 10, "status": "filled"}
    store.append_many([(ORDER, "o-1", fill), (ORDER, "o-1", {**fill, "ts": format_utc(T)}),
                       (ORDER, "o-2", {**fill, "client_id": "o-2"})])
    assert Activity.from_store(store, None, T).log.fills_within("AAA", T, MINUTE) == 2
