"""The order and book facts the engine computes, the order policy's kind and its evaluation:
in-process, on real policy files, the real rule engine and real audit stores."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from engine.actions import OrderAction, most_restrictive_order
from engine.audit.store import AuditStore
from engine.execution.activity import EquityMarks, ExecutionLog
from engine.execution.gate import OrderIntent
from engine.execution.order_facts import BookView, order_facts
from engine.execution.order_policy import OrderPolicyEvaluator
from engine.execution.records import ORDER
from engine.policy.loader import load_policy_set
from engine.policy.problems import PolicyError
from engine.timeutil import format_utc, parse_utc
from engine.tooling.lint import lint
from tests.conftest import REPO_ROOT, WritePolicy

T = parse_utc("2024-03-01T15:00:00Z")


def _facts(order: OrderIntent, book: BookView, log: ExecutionLog | None = None,
           marks: EquityMarks | None = None) -> dict[str, object]:
    return order_facts(order, book, log or ExecutionLog(), marks or EquityMarks(), T)


def test_amounts_and_weights_are_computed_from_the_book() -> None:
    book = BookView(cash=500_000, positions={"AAA": 1000, "BBB": 2000},
                    prices={"AAA": 100.0, "BBB": 200.0})  # equity 1,000,000
    f = _facts(OrderIntent("AAA", "BUY", 500, 102.0, 1000), book)
    assert f["order_shares"] == 500
    assert f["order_notional"] == 51_000
    assert f["order_notional_pct_equity"] == pytest.approx(5.1)
    assert f["price_deviation"] == pytest.approx(0.02)
    assert f["position_weight_after"] == pytest.approx(0.15)   # 1500 x 100 / 1,000,000
    assert f["gross_exposure_after"] == pytest.approx(0.55)    # (150,000 + 400,000) / 1e6
    sell = _facts(OrderIntent("BBB", "SELL", 2000, 200.0, 2000), book)
    assert sell["position_weight_after"] == 0
    assert sell["gross_exposure_after"] == pytest.approx(0.1)


def test_facts_that_cannot_be_computed_are_left_out() -> None:
    # A held symbol without a price: no equity, so nothing relative to it.
    book = BookView(cash=1000, positions={"AAA": 10, "ZZZ": 5}, prices={"AAA": 100.0})
    f = _facts(OrderIntent("AAA", "BUY", 1, 100.0, 10), book)
    for name in ("order_notional_pct_equity", "position_weight_after", "gross_exposure_after",
                 "daily_pnl_pct", "drawdown_from_peak"):
        assert name not in f
    assert f["price_deviation"] == 0
    # No reference price for the order's symbol: no collar, no weight.
    g = _facts(OrderIntent("NEW", "BUY", 1, 10.0, 0), BookView(1000, {}, {}))
    assert "price_deviation" not in g and "position_weight_after" not in g
    assert g["order_notional_pct_equity"] == pytest.approx(1.0)
    # NaN and non-positive prices are no prices.
    nan = BookView(1000, {"AAA": 1}, {"AAA": float("nan")})
    assert nan.equity() is None
    assert BookView(0, {}, {}).equity() is None


def test_windows_of_the_execution_log() -> None:
    log = ExecutionLog()
    log.note_sent(T - timedelta(seconds=61), "AAA", "BUY", 5)
    log.note_sent(T - timedelta(seconds=60), "AAA", "BUY", 5)    # exactly a minute: out
    log.note_sent(T - timedelta(seconds=59.9), "BBB", "SELL", 5)
    log.note_sent(T - timedelta(seconds=0.5), "AAA", "BUY", 7)
    log.note_fill(T - timedelta(seconds=30), "AAA")
    log.note_fill(T - timedelta(seconds=30), "BBB")
    f = _facts(OrderIntent("AAA", "BUY", 5, 100.0, 0), BookView(10_000, {}, {"AAA": 100.0}),
               log)
    assert f["orders_last_minute"] == 3      # two in the window, and this one
    assert f["orders_last_second"] == 2
    assert f["fills_same_symbol_last_minute"] == 1
    assert f["duplicate_order_seconds"] == pytest.approx(60.0)
    other = _facts(OrderIntent("AAA", "SELL", 5, 100.0, 0), BookView(10_000, {}, {}), log)
    assert other["duplicate_order_seconds"] == 86400  # none within the look-back


def test_the_execution_log_is_rebuilt_from_the_store(store: AuditStore) -> None:
    rows = [(ORDER, f"o{i}", {"run_id": None, "ts": format_utc(T - timedelta(seconds=s)),
                              "symbol": "AAA", "side": "BUY", "shares": 1, "status": st})
            for i, (s, st) in enumerate([(10, "submitting"), (20, "filled"), (5, "denied"),
                                         (2 * 86400, "submitting")])]
    rows.append((ORDER, "other-run", {"run_id": "r1", "ts": format_utc(T), "symbol": "AAA",
                                      "side": "BUY", "shares": 1, "status": "submitting"}))
    store.append_many(rows)
    log = ExecutionLog.from_store(store, None, T)
    assert log.sent_within(T, timedelta(minutes=1)) == 1
    assert log.fills_within("AAA", T, timedelta(minutes=1)) == 1
    assert log.seconds_since_same("AAA", "BUY", 1, T) == pytest.approx(10.0)


def test_start_of_day_and_peak(store: AuditStore) -> None:
    marks = EquityMarks()
    assert marks.start_of_day(T) is None
    marks.mark(T - timedelta(days=2), 1_000_000)
    marks.mark(T - timedelta(days=1), 900_000)
    marks.mark(T, 880_000)
    assert marks.start_of_day(T) == 900_000      # yesterday's last mark
    assert marks.peak == 1_000_000
    f = _facts(OrderIntent("AAA", "SELL", 1, 100.0, 0), BookView(880_000, {}, {"AAA": 100.0}),
               marks=marks)
    assert f["daily_pnl_pct"] == pytest.approx(100 * (880_000 - 900_000) / 900_000)
    assert f["drawdown_from_peak"] == pytest.approx(0.12)
    marks.reset_peak()                            # a person resumed: today is the new peak
    assert marks.peak == 880_000
    # The same from the store, with a resume recorded between the marks.
    store.append_many([EquityMarks.record(None, T - timedelta(days=2), 1_000_000),
                       EquityMarks.record(None, T - timedelta(days=1), 900_000),
                       ("trading_state", "book", {"run_id": None, "state": "ACTIVE",
                                                  "resumed": True}),
                       EquityMarks.record(None, T, 880_000)])
    again = EquityMarks.from_store(store, None)
    assert again.peak == 900_000
    assert again.start_of_day(T) == 900_000
    first_day = EquityMarks()
    first_day.mark(T, 500_000)                    # nothing before today: the day's first mark
    assert first_day.start_of_day(T) == 500_000


def test_order_actions_are_ordered_once() -> None:
    assert most_restrictive_order([]) is OrderAction.SEND
    assert most_restrictive_order([OrderAction.DENY, OrderAction.REDUCE_ONLY,
                                   OrderAction.REQUIRE_APPROVAL]) is OrderAction.REDUCE_ONLY
    assert most_restrictive_order([OrderAction.HALT, OrderAction.REDUCE_ONLY]) is \
        OrderAction.HALT
    assert most_restrictive_order([OrderAction.REQUIRE_APPROVAL, OrderAction.DENY]) is \
        OrderAction.DENY


def test_every_order_policy_counts_and_a_missing_fact_fails_closed(
        write_policy: WritePolicy) -> None:
    write_policy(_ORDER.format(name="a", rule="big", action="require_approval",
                               fact="order_notional", op=">", value=1000), "a.yaml")
    path = write_policy(_ORDER.format(name="b", rule="collar", action="deny",
                                      fact="price_deviation", op=">", value=0.05), "b.yaml")
    ev = OrderPolicyEvaluator(load_policy_set([str(path.parent)]))
    try:
        j = ev.judge({"order_notional": 5000, "price_deviation": 0.1})
        assert (j.action, j.rule, j.fired) == (OrderAction.DENY, "collar", ("big", "collar"))
        j = ev.judge({"order_notional": 5000, "price_deviation": 0.0})
        assert (j.action, j.rule) == (OrderAction.REQUIRE_APPROVAL, "big")
        j = ev.judge({"order_notional": 5000})
        assert (j.action, j.rule) == (OrderAction.DENY, "fact-missing:price_deviation")
        j = ev.judge({"order_notional": float("nan"), "price_deviation": 0.0})
        assert (j.action, j.rule) == (OrderAction.DENY, "fact-invalid:order_notional")
        assert ev.judge({"order_notional": 10, "price_deviation": 0.0}).action is \
            OrderAction.SEND
    finally:
        ev.close()


_ORDER = """\
apiVersion: fuggerbot/v1
kind: OrderPolicy
metadata: {{name: {name}, version: 1.0.0}}
spec:
  rules:
    - id: {rule}
      when: {{fact: {fact}, op: "{op}", value: {value}}}
      action: {action}
"""


def _problems(path: Path) -> list[str]:
    with pytest.raises(PolicyError) as e:
        load_policy_set([str(path)])
    return [str(p) for p in e.value.problems]


def test_order_policy_mistakes_are_named_at_their_position(write_policy: WritePolicy) -> None:
    path = write_policy(_ORDER.format(name="o", rule="r", action="flatten",
                                      fact="order_notional_pct", op=">", value=25))
    problems = _problems(path)
    assert any(p.startswith(f"{path}:8:15:") and "flatten" in p for p in problems), problems
    assert any(p.startswith(f"{path}:7:20:") and "order_notional_pct_equity" in p
               for p in problems), problems
    weak = write_policy(_ORDER.format(name="o", rule="r", action="deny", fact="order_notional",
                                      op=">", value=1).replace(
        "spec:\n", "spec:\n  fail_closed: require_approval\n"), "weak.yaml")
    [problem] = _problems(weak)
    assert problem.startswith(f"{weak}:5:16:") and "fail_closed" in problem
    fraction = write_policy(_ORDER.format(name="o", rule="r", action="halt",
                                          fact="drawdown_from_peak", op=">=", value=15),
                            "fraction.yaml")
    [problem] = _problems(fraction)
    assert "write 0.15 for 15%" in problem


def test_the_shipped_order_policy_loads_with_the_default_set() -> None:
    ps = load_policy_set([str(REPO_ROOT / "policies")])
    [order] = ps.of_kind("OrderPolicy")
    assert order.fail_closed == "deny"
    assert {r.action for r in order.rules} == {"deny", "reduce_only", "halt"}


# --- fugger lint knows the kind ---------------------------------------------------------------


def _order_rules(*rules: tuple[str, str, str]) -> str:
    body = "".join(f"    - id: {rid}\n      when: {when}\n      action: {action}\n"
                   for rid, when, action in rules)
    return ("apiVersion: fuggerbot/v1\nkind: OrderPolicy\n"
            "metadata: {name: crafted-orders, version: 1.0.0}\nspec:\n  rules:\n" + body)


def test_lint_finds_dead_shadowed_and_duplicate_order_rules(write_policy: WritePolicy) -> None:
    path = write_policy(_order_rules(
        ("big-halt", '{fact: order_notional_pct_equity, op: ">", value: 20}', "halt"),
        ("big-deny", '{fact: order_notional_pct_equity, op: ">", value: 30}', "deny"),
        ("never", '{all: [{fact: price_deviation, op: ">", value: 0.2}, '
                  '{fact: price_deviation, op: "<", value: 0.1}]}', "deny"),
        ("collar-deny", '{fact: price_deviation, op: ">", value: 0.05}', "deny"),
        ("collar-ask", '{fact: price_deviation, op: ">", value: 0.05}', "require_approval"),
    ), "orders.yaml")
    found = {(f.code, f.message.split("'")[1]) for f in
             lint(load_policy_set([str(path)]))}
    assert ("shadowed-rule", "big-deny") in found       # halt always wins over deny
    assert ("dead-rule", "never") in found
    assert ("duplicate-condition", "collar-ask") in found
    assert ("shadowed-rule", "big-halt") not in found


def test_lint_warns_when_the_rotation_plans_orders_the_controls_refuse(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    shutil.copytree(REPO_ROOT / "policies", folder)
    rotation = folder / "rotation.yaml"
    rotation.write_text(rotation.read_text(encoding="utf-8").replace(
        "max_position: 0.24 ", "max_position: 0.4 "), encoding="utf-8")
    [finding] = [f for f in lint(load_policy_set([str(folder)]))
                 if f.code == "threshold-conflict"]
    assert finding.pos.file == str(rotation)
    assert "max-order-pct-equity" in finding.message and "(25, 40]" in finding.message
    assert [f for f in lint(load_policy_set([str(REPO_ROOT / "policies")]))
            if f.code == "threshold-conflict"] == []


def test_what_the_order_policy_says_of_its_verdict(write_policy: WritePolicy) -> None:
    write_policy(_ORDER.format(name="sizes", rule="big", action="deny",
                               fact="order_notional", op=">", value=1000), "a.yaml")
    path = write_policy(_ORDER.format(name="collars", rule="collar", action="deny",
                                      fact="price_deviation", op=">", value=0.05), "b.yaml")
    ev = OrderPolicyEvaluator(load_policy_set([str(path.parent)]))
    try:
        assert ev.active
        assert sorted(ev.facts) == ["order_notional", "price_deviation"]
        passed = ev.judge({"order_notional": 10, "price_deviation": 0.0})
        assert passed.reason == "the order policy allows it"
        assert passed.to_json() == {"action": "send", "rule": None, "policy": None,
                                    "source": None, "fired": [], "problems": [],
                                    "observed": {"order_notional": 10, "price_deviation": 0.0}}
        both = ev.judge({"order_notional": 5000, "price_deviation": 0.1})
        # Equal restriction, no fact problem: the first rule in policy order decides.
        assert both.rule == "big" and both.fired == ("big", "collar")
        assert both.reason == "order policy sizes: big (deny)"
        assert both.to_json()["source"].endswith("a.yaml:6:7")
        # At equal restriction a fact that cannot be read is named before a rule that fired.
        blind = ev.judge({"order_notional": 5000})
        assert blind.rule == "fact-missing:price_deviation"
        assert blind.reason.startswith("price_deviation")
        assert blind.reason.endswith(": the order policy cannot judge the order "
                                     "(fact-missing:price_deviation, fails closed to deny)")
        assert blind.to_json()["problems"] == list(blind.problems) != []
    finally:
        ev.close()
    nothing = OrderPolicyEvaluator(load_policy_set([str(REPO_ROOT / "policies" / "safety.yaml")]))
    assert not nothing.active and nothing.facts == ()
    assert nothing.judge({}).action is OrderAction.SEND
    assert nothing.judge({}).to_json()["observed"] == {}


@pytest.mark.parametrize("bad", [0, 0.0, -1.0, float("inf"), float("nan"), True, "100", None])
def test_a_reference_price_that_is_no_price_leaves_the_collar_fact_out(bad: object) -> None:
    """The price collar then fails closed on `price_deviation` (missing), never judging the
    order against a zero, negative or infinite reference."""
    f = _facts(OrderIntent("AAA", "BUY", 1, 100.0, 0), BookView(10_000, {}, {"AAA": bad}))
    assert "price_deviation" not in f and "position_weight_after" not in f
    held = BookView(10_000, {"AAA": 1}, {"AAA": bad})
    assert held.equity() is None


def test_prices_and_amounts_below_one_are_still_amounts() -> None:
    """Nothing is a unit: a reference price, an equity, a start of day or a peak under one is
    as real as any other."""
    book = BookView(cash=0.5, positions={"PENNY": 1}, prices={"PENNY": 0.25})  # equity 0.75
    assert book.equity() == pytest.approx(0.75)
    marks = EquityMarks()
    marks.mark(T - timedelta(days=1), 0.5)
    marks.mark(T, 0.75)
    f = _facts(OrderIntent("PENNY", "SELL", 1, 0.25, 1), book, marks=marks)
    assert f["price_deviation"] == 0
    assert f["order_notional_pct_equity"] == pytest.approx(100 * 0.25 / 0.75)
    assert f["daily_pnl_pct"] == pytest.approx(50.0)       # from 0.5 to 0.75
    assert f["drawdown_from_peak"] == 0.0                  # at the peak


def test_which_way_an_order_goes_and_a_symbol_not_held_yet() -> None:
    book = BookView(cash=1000, positions={}, prices={"NEW": 10.0})
    buy = _facts(OrderIntent("NEW", "BUY", 5, 10.0, 0), book)
    assert buy["order_opens"] is True
    assert buy["position_weight_after"] == pytest.approx(0.05)   # 5 x 10 / 1000
    assert buy["gross_exposure_after"] == pytest.approx(0.05)
    assert _facts(OrderIntent("NEW", "SELL", 5, 10.0, 0), book)["order_opens"] is False
    # Marks of zero are no start of day and no peak: nothing relative to them.
    zero = EquityMarks()
    zero.mark(T, 0.0)
    f = _facts(OrderIntent("NEW", "BUY", 5, 10.0, 0), book, marks=zero)
    assert "daily_pnl_pct" not in f and "drawdown_from_peak" not in f
