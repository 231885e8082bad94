"""The gate's cost per order with the pre-trade controls, beside the safety decision's own
time, measured in the same interleaved run.

- decide: `SafetyEvaluator.decide` on the order's snapshot (the shipped rails): the baseline;
- gate: the gate without an order policy (the rails' verdict, the trading state, the shipped
  approval policy);
- gate+orders: the order and book facts computed from the order, the book, the execution log
  and the equity marks (engine/execution/order_facts.py, activity.py), then the gate with the
  shipped order policy (policies/pretrade.yaml) and the approval policy.

The book is given to the facts as it is (cash, positions, this cycle's prices), as a cycle
hands it over: what a broker takes to report its book is the broker's time, not the gate's.

Every order reaches the controls (its symbol's decision allows it), and each control's fact
falls beyond its limit on a minority of orders, so most orders pass the controls and go on to
the approval step, as in a working day. Agreement: each order's outcome (verdict, rule,
latch, the order rules that fired) must be the same in every repeat, and the order rules that
fired must be the ones the shipped rules give as plain Python on the same facts.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks import contenders as ct
from benchmarks.timing import interleaved, print_latencies, ratio, summary
from engine.decision import Decision
from engine.evaluator import SafetyEvaluator
from engine.execution.activity import EquityMarks, ExecutionLog
from engine.execution.approval_policy import ApprovalEvaluator
from engine.execution.gate import GateResult, OrderIntent, gate
from engine.execution.order_facts import BookView, order_facts
from engine.execution.order_policy import KIND, OrderPolicyEvaluator
from engine.execution.state import INITIAL
from engine.policy.loader import load_policy_set

PATHS = ("decide", "gate", "gate+orders")
#: The aim of the issue: the gate with the order policy at most twice the safety decision.
AIM = 2.0
NOW = datetime(2024, 1, 2, 21, 0, tzinfo=UTC)
CALM = {"drift_score": 0.1, "volatility": 0.1, "coherence": 0.9, "frs": 0.9,
        "meta_reliability": 0.9}


@dataclass(frozen=True)
class Item:
    """One order with everything the gate reads, made before the clock starts."""

    n: int
    snapshot: ct.Snapshot
    order: OrderIntent
    decision: Decision  # the symbol's decision, one that allows
    book: BookView
    log: ExecutionLog
    marks: EquityMarks

    def facts(self) -> dict[str, Any]:
        return order_facts(self.order, self.book, self.log, self.marks, NOW)


def items(snapshots: list[ct.Snapshot], safety: SafetyEvaluator, seed: int = 11) -> list[Item]:
    rng = random.Random(seed)
    allows = {s["symbol"]: safety.decide({**s, **CALM}) for s in snapshots}
    return [_item(n, rng, s, allows[s["symbol"]]) for n, s in enumerate(snapshots)]


def _beyond(rng: random.Random, usual: tuple[float, float], over: tuple[float, float],
            share: float = 0.08) -> float:
    """A value in `usual` mostly, in `over` (past a control's limit) for `share` of orders."""
    lo, hi = over if rng.random() < share else usual
    return rng.uniform(lo, hi)


def _item(n: int, rng: random.Random, snap: ct.Snapshot, decision: Decision) -> Item:
    symbol = snap["symbol"]
    reference = rng.choice((20.0, 50.0, 125.0))
    equity_start = rng.choice((2_000_000.0, 3_000_000.0))
    equity = equity_start * (1 + _beyond(rng, (-0.025, 0.01), (-0.05, -0.03)))
    peak = equity / (1 - _beyond(rng, (0.0, 0.12), (0.15, 0.25)))
    held = rng.choice((0, 1000, 1000))
    cash = equity - held * reference
    price = reference * (1 + rng.choice((-1, 1)) * _beyond(rng, (0.0, 0.04), (0.051, 0.08)))
    shares = max(1, int(equity * _beyond(rng, (0.01, 0.2), (0.26, 0.4)) / price))
    side = "SELL" if held and rng.random() < 0.3 else "BUY"
    if side == "SELL":
        shares = min(shares, held)
    log = ExecutionLog()
    # Messages in the last minute (a few just before it), and now and then a burst in the
    # last second; other symbols and sizes, so none is a duplicate by chance.
    for i in range(int(_beyond(rng, (0, 28), (31, 40)))):
        log.note_sent(NOW - timedelta(seconds=rng.uniform(0.0, 65.0)), f"X{i}", "BUY", i + 1)
    for i in range(int(_beyond(rng, (0, 4), (6, 9)))):
        log.note_sent(NOW - timedelta(seconds=rng.uniform(0.0, 0.99)), f"Y{i}", "BUY", i + 1)
    if rng.random() < 0.2:  # the same order a little earlier: a duplicate half the time
        ago = rng.choice((rng.uniform(1.0, 9.9), rng.uniform(10.1, 50.0)))
        log.note_sent(NOW - timedelta(seconds=ago), symbol, side, shares)
    for _ in range(int(_beyond(rng, (0, 9), (10, 14)))):
        log.note_fill(NOW - timedelta(seconds=rng.uniform(0.0, 65.0)), symbol)
    marks = EquityMarks()
    marks.mark(NOW - timedelta(days=2), peak)
    marks.mark(NOW - timedelta(days=1), equity_start)
    marks.mark(NOW, equity)
    order = OrderIntent(symbol, side, shares, round(price, 4), held)
    return Item(n, snap, order, decision, BookView(cash, {symbol: held}, {symbol: reference}),
                log, marks)


def _outcome(result: GateResult) -> tuple[Any, ...]:
    fired = result.controls.fired if result.controls is not None else None
    return result.verdict, result.rule, result.latch, result.approvers, fired


def bench(root: Path, snapshots: list[ct.Snapshot], repeats: int, chunk: int
          ) -> dict[str, Any]:
    shipped = load_policy_set([str(root / "policies" / name) for name in
                               ("safety.yaml", "approval.yaml", "pretrade.yaml")])
    safety = SafetyEvaluator(shipped)
    approval = ApprovalEvaluator(shipped)
    controls = OrderPolicyEvaluator(shipped)
    no_controls = OrderPolicyEvaluator(load_policy_set([str(root / "policies" /
                                                            "safety.yaml")]))
    work = items(snapshots, safety)
    plain = ct.plain(shipped.of_kind(KIND)[0])
    decide = safety.decide

    def gate_alone(it: Item) -> GateResult:
        return gate(it.order, it.decision, INITIAL, approval, controls=no_controls,
                    order_facts={})

    def gate_orders(it: Item) -> GateResult:
        return gate(it.order, it.decision, INITIAL, approval, controls=controls,
                    order_facts=it.facts())

    paths: dict[str, Callable[[Item], Any]] = {
        "decide": lambda it: decide(it.snapshot), "gate": gate_alone,
        "gate+orders": gate_orders}
    first: dict[tuple[str, int], tuple[Any, ...]] = {}

    def check(name: str, it: Item, result: Any, _: Any) -> str | None:
        assert isinstance(result, GateResult)
        seen = _outcome(result)
        before = first.setdefault((name, it.n), seen)
        if seen != before:
            return f"{name}: order {it.n} gave {seen}, and {before} in an earlier repeat"
        if name == "gate":
            return None
        if result.controls is None:
            return f"{name}: the order policy was not consulted for order {it.n}"
        facts = it.facts()
        want = plain(facts)
        if frozenset(result.controls.fired) != want:
            return (f"{name}: order {it.n} fired {sorted(result.controls.fired)} where the "
                    f"rules give {sorted(want)} for {facts}")
        return None

    for fn in paths.values():  # warm up every path
        for it in work[:300]:
            fn(it)
    runs = interleaved(paths, work, repeats=repeats, chunk=chunk, check=check)
    outcomes = [gate_orders(it) for it in work]
    stopped = Counter(r.controls.rule for r in outcomes
                      if r.controls is not None and r.controls.rule is not None)
    verdicts = Counter(r.verdict.value for r in outcomes)
    for ev in (safety, approval, controls, no_controls):
        ev.close()
    s = runs.samples
    gate_orders_ratio = ratio(s["gate+orders"], s["decide"])
    return {
        **{name: summary(s[name]) for name in PATHS},
        "ratio_gate_orders_to_decide": gate_orders_ratio,
        "ratio_gate_to_decide": ratio(s["gate"], s["decide"]),
        "aim_ratio": AIM, "aim_met": gate_orders_ratio["median"] <= AIM,
        "orders": len(work), "verdicts": dict(sorted(verdicts.items())),
        "stopped_by_order_rule": dict(sorted(stopped.items())),
        "agreement": {"checked": runs.checked, "disagreements": runs.disagreements},
    }


def print_table(sec: dict[str, Any]) -> None:
    print(f"\ngate per order ({sec['orders']} orders; verdicts {sec['verdicts']})")
    print_latencies(sec, PATHS, (("gate+orders / decide", "ratio_gate_orders_to_decide"),
                                 ("gate / decide", "ratio_gate_to_decide")))
    print(f"{'aim':26} gate+orders <= {sec['aim_ratio']}x decide: "
          f"{'met' if sec['aim_met'] else 'NOT met'}")
    stopped = ", ".join(f"{k} {v}" for k, v in sec["stopped_by_order_rule"].items())
    print(f"{'stopped by order rules':26} {stopped}")
