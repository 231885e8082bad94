"""One cycle of the engine: decide, latch, rotate, gate, queue, send, and record it all.

`fugger step` runs one cycle on the wall clock; `fugger run` runs one per day of a replay on the
snapshot clock, where the cycle's now is its newest snapshot's `ts`, so a replay of history
behaves as the live system would have (see engine/clock). Freshness, approval time-to-live and
the latch all read the cycle's now.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.access.model import SYSTEM
from engine.actions import Action
from engine.audit.store import AuditStore
from engine.backends.agreement import CheckedBackend
from engine.clock import SNAPSHOT, Clock
from engine.decision import Decision, governing
from engine.evaluator import SafetyEvaluator
from engine.execution import approvals
from engine.execution import state as trading
from engine.execution.activity import Activity, EquityMarks
from engine.execution.approval_policy import ApprovalEvaluator
from engine.execution.approvals import ApprovalItem
from engine.execution.broker import Broker, RestingBroker
from engine.execution.gate import OrderIntent
from engine.execution.gateway import (
    Controls,
    Gateway,
    OrderOutcome,
    client_id,
    record_settled,
)
from engine.execution.order_facts import BookView
from engine.execution.order_policy import OrderPolicyEvaluator
from engine.ids import new_id
from engine.policy.model import PolicySet
from engine.portfolio.book import Book
from engine.rotation import Rotation, RotationEvaluator, snapshot_prices
from engine.timeutil import format_utc

REBALANCE = "rebalance"

#: Decides a queued item in a replay: "approved", "rejected" or None (left to expire).
Approver = Callable[[ApprovalItem], str | None]


class CompiledSet:
    """A policy set compiled for cycles: safety, rotation, order and approval evaluators.

    `engine="vector"`: a replay's snapshots are decided in the vectorised backend, each
    checked against durable-rules (`safety`, the engine of record) before its cycle acts on
    it; a disagreement raises BackendDisagreement and the cycle does nothing. A cycle on the
    wall clock always decides in durable-rules.
    """

    def __init__(self, policy_set: PolicySet, *, engine: str = "durable") -> None:
        self.policy_set = policy_set
        self.safety = SafetyEvaluator(policy_set)
        self.checked: CheckedBackend | None = None
        if engine == "vector":
            self.checked = CheckedBackend(policy_set, durable=self.safety)
        elif engine != "durable":
            raise ValueError(f"unknown engine {engine!r}: durable or vector")
        self.rotation = (RotationEvaluator(policy_set)
                         if policy_set.of_kind("RotationPolicy") else None)
        self.approval = ApprovalEvaluator(policy_set)
        self.orders = OrderPolicyEvaluator(policy_set)

    def decide(self, snapshots: Sequence[Mapping[str, Any]], clock: Clock) -> list[Decision]:
        """The decision of every snapshot of one cycle, in order."""
        if self.checked is None or clock.wall:
            return [self.safety.decide(s, clock=clock) for s in snapshots]
        at = format_utc(clock.now())
        batch, _ = self.checked.check([(f"snapshot {n} of the cycle at {at}", s)
                                       for n, s in enumerate(snapshots, start=1)])
        return [batch.decision(i, clock) for i in range(len(batch))]

    def close(self) -> None:
        self.safety.close()
        if self.rotation:
            self.rotation.close()
        self.approval.close()
        self.orders.close()


@dataclass(frozen=True)
class CycleResult:
    ts: str
    #: The decision governing each symbol (see `governing`); every one made is in `made`.
    decisions: Mapping[str, Decision]
    state: trading.StateView
    previous_state: trading.StateView
    rotation: Rotation | None
    rebalanced: bool
    outcomes: tuple[OrderOutcome, ...]
    expired: tuple[ApprovalItem, ...]
    writes: Deferred | None = None
    made: tuple[Decision, ...] = ()
    cycle_id: str = ""
    #: The usable price of each symbol in the cycle's snapshots.
    prices: Mapping[str, float] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        out = {"sent": 0, "filled": 0, "denied": 0, "pending": 0, "held": 0, "expired": 0,
               "rejected": 0, "failed": 0}
        for o in self.outcomes:
            key = {"pending_approval": "pending"}.get(o.status, o.status)
            out[key] = out.get(key, 0) + 1
            if o.status in ("filled", "sent"):
                out["sent"] += 1 if o.status == "filled" else 0
        out["held"] = out["pending"]
        out["expired"] = len(self.expired)
        return out


class Deferred:
    """Records waiting to be appended in one transaction."""

    def __init__(self, store: AuditStore, items: list[tuple[str, str, dict[str, Any]]]) -> None:
        self.store = store
        self.items = items

    def add(self, kind: str, ref: str, body: dict[str, Any]) -> None:
        self.items.append((kind, ref, body))

    def flush(self) -> None:
        if self.items:
            self.store.append_many(self.items)
            self.items = []


def run_cycle(compiled: CompiledSet, store: AuditStore, broker: Broker,
              snapshots: Sequence[Mapping[str, Any]], *, run_id: str | None = None,
              approver: Approver | None = None, approver_name: str = "replay-approver",
              on_broker_error: Callable[[str, str], None] | None = None,
              queue: approvals.ApprovalQueue | None = None,
              flush: bool = True,
              last_rebalance: str | Any | None = ...,
              clock: Clock = SNAPSHOT,
              requester: str = SYSTEM,
              partial: bool = False,
              activity: Activity | None = None) -> CycleResult:
    """One cycle. With `flush=False` the cycle's own records (decisions, state, rebalance) may
    still be unwritten when it returns, if no order left: the caller appends them with its
    own record through `result.writes`, in one transaction. Before any order reaches the
    gateway they are always committed. `last_rebalance`: when the caller tracks it (a long
    run), the time of the last rebalance carried out; otherwise it is read from the store.
    `clock`: the snapshot clock for replays, the wall clock for a live cycle.
    `requester`: who asks for this cycle's orders (the person stepping it, or a run's service
    account); an order held for approval names them, and they cannot approve it.
    `partial`: the cycle sees only the symbols its caller sent (a bot calling the service),
    not the whole book: the caller plans its own orders, so nothing is rotated, and an
    approved order goes out in the first cycle that decides and prices its symbol (until its
    approval expires), not in one that says nothing of it.
    `activity`: the execution log and equity marks a run carries (otherwise read from the
    store)."""
    at = clock.for_cycle(snapshots)
    now = at.now()
    ts = format_utc(now)
    activity = activity or Activity.from_store(store, run_id, now)
    prices = snapshot_prices(snapshots)  # what orders are priced and checked at
    activity.prices.update(prices)
    gateway = Gateway(store, broker, compiled.approval, run_id=run_id,
                      on_broker_error=on_broker_error, requester=requester,
                      controls=Controls(compiled.orders, activity.prices, activity.log,
                                        activity.marks))
    queue = queue or approvals.ApprovalQueue(store)
    expired = tuple(approvals.expire_due(store, now, run_id, queue))

    # Every snapshot is decided and recorded; a symbol with several in one cycle is governed
    # by the most restrictive of their decisions.
    cycle_id = new_id()
    made = compiled.decide(snapshots, at)
    decisions = governing(made)
    writes = Deferred(store, [
        ("decision", d.decision_id, {"decision": d.to_json(), "facts": d.record_facts(),
                                     "run_id": run_id, "cycle": cycle_id})
        for d in made])
    verdicts = {sym: d.verdict for sym, d in decisions.items()}
    equity = BookView(broker.cash(), broker.positions(), activity.prices).equity()
    if equity is not None:  # without it the equity facts are unknown: orders fail closed
        activity.marks.mark(now, equity)
        writes.add(*EquityMarks.record(run_id, now, equity))

    before = trading.load(store, run_id)
    after = trading.derive(before, verdicts, ts)
    if after != before:
        writes.add(*trading.change(after, before, run_id=run_id))
        if after.state is trading.TradingState.HALTED:
            writes.flush()
            gateway.cancel_open(now, after.rule or "halt")

    if isinstance(broker, RestingBroker) and broker.open_orders():
        writes.flush()
        settled = broker.fill_open(prices)
        record_settled(store, settled, now, run_id=run_id)
        for placed in settled:
            if placed.status.value == "filled":
                activity.log.note_fill(now, placed.symbol)

    outcomes: list[OrderOutcome] = []
    if queue.approved_unsent(run_id):
        writes.flush()  # decisions are durable before any order leaves
        outcomes.extend(_send_approved(queue, gateway, decisions, after, now, run_id, prices,
                                       priced_only=partial))

    positions = broker.positions()
    rotation = None
    lines: list[OrderIntent] = []
    if compiled.rotation is not None and not partial:
        book = Book(cash=broker.cash(), positions=positions, as_of=ts,
                    last_rebalance=(last_rebalance if last_rebalance is not ...
                                    else _last_rebalance(store, ts, run_id)))
        rotation = compiled.rotation.rotate(book, snapshots, ts)
        if rotation.plan is not None:
            lines = [OrderIntent(pl.symbol, pl.side, pl.shares, pl.price,
                                 positions.get(pl.symbol, 0)) for pl in rotation.plan.lines]
    lines = _not_in_flight(lines, broker, queue, run_id)
    lines = _with_flatten_exits(lines, decisions, positions, prices)

    if lines:
        writes.flush()
    for i, order in enumerate(lines):
        line_decision = decisions.get(order.symbol)
        cid = client_id(line_decision.decision_id if line_decision else f"none-{ts}", i, order)
        outcomes.append(gateway.submit(order, line_decision, after, cid=cid, now=now))

    if approver is not None:
        for o in list(outcomes):
            if o.status != "pending_approval":
                continue
            queued = approvals.get(store, o.client_id)
            if queued is None or not queued.pending:
                continue
            verdict = approver(queued)
            if verdict is None:
                continue
            approvals.settle(store, queued.item_id, outcome=verdict, by=approver_name,
                             reason="declared replay rule", now=now)
            if verdict == "approved":
                outcomes.extend(_send_approved(queue, gateway, decisions, after, now, run_id,
                                               prices, only=queued.item_id))

    rebalanced = bool(rotation and rotation.trigger.triggered and any(
        o.status in ("filled", "sent") for o in outcomes))
    if rotation is not None and rotation.trigger.triggered:
        writes.add(REBALANCE, ts, {
            "run_id": run_id, "ts": ts, "rule": rotation.trigger.rule,
            "source": rotation.trigger.source, "facts": dict(rotation.trigger.facts),
            "executed": rebalanced, "targets": dict(rotation.targets.targets),
            "summary": f"rebalance triggered by {rotation.trigger.rule}"})
    if flush:
        writes.flush()
    return CycleResult(ts, decisions, gateway.latched or after, before, rotation, rebalanced,
                       tuple(outcomes), expired, writes, tuple(made), cycle_id, prices)


def _send_approved(queue: approvals.ApprovalQueue, gateway: Gateway,
                   decisions: Mapping[str, Decision], view: trading.StateView, now: datetime,
                   run_id: str | None, prices: Mapping[str, float],
                   only: str | None = None, priced_only: bool = False) -> list[OrderOutcome]:
    """Send approved orders, each checked against this cycle's decision for its symbol and
    priced at this cycle's price (with `priced_only`, only those of symbols priced here)."""
    out = []
    for item in queue.approved_unsent(run_id):
        if only is not None and item.item_id != only:
            continue
        if priced_only and item.symbol not in prices:
            continue
        positions = gateway.broker.positions()
        order = OrderIntent(item.symbol, item.side, item.shares, item.price,
                            positions.get(item.symbol, 0))
        out.append(gateway.submit(order, decisions.get(item.symbol), view, cid=item.item_id,
                                  now=now, approved_item=item.item_id,
                                  market_price=prices.get(item.symbol)))
    return out


def _not_in_flight(lines: list[OrderIntent], broker: Broker, queue: approvals.ApprovalQueue,
                   run_id: str | None) -> list[OrderIntent]:
    """Drop planned lines an earlier cycle already has under way: the plan is made from the
    broker's filled positions, so an order still open at the broker, or one still waiting for
    a person, would otherwise be planned, and sent, a second time."""
    open_symbols = {o.symbol for o in broker.open_orders()}
    waiting = {(i.symbol, i.side) for i in queue.pending(run_id)}
    return [o for o in lines
            if o.symbol not in open_symbols and (o.symbol, o.side) not in waiting]


def _with_flatten_exits(lines: list[OrderIntent], decisions: Mapping[str, Decision],
                        positions: Mapping[str, int],
                        prices: Mapping[str, float]) -> list[OrderIntent]:
    """Under flatten, a symbol's lines are replaced by one exit of the whole position."""
    flatten = {sym for sym, d in decisions.items() if d.action is Action.FLATTEN}
    if not flatten:
        return lines
    kept = [o for o in lines if o.symbol not in flatten]
    exits = [OrderIntent(sym, "SELL", positions[sym], prices[sym], positions[sym])
             for sym in sorted(flatten) if positions.get(sym, 0) > 0 and sym in prices]
    sells = [o for o in kept if o.side == "SELL"]
    buys = [o for o in kept if o.side != "SELL"]
    return exits + sells + buys


def _last_rebalance(store: AuditStore, now_ts: str, run_id: str | None) -> str | None:
    for r in store.records(REBALANCE, limit=200):
        if r.body.get("run_id") == run_id and r.body.get("executed") and \
                r.body.get("ts", "") <= now_ts:
            return str(r.body["ts"])
    return None
