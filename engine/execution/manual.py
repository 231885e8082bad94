"""One order by hand (`fugger order`): judged exactly like the bot's orders, through the same
gateway and gate: the rails from the symbol's snapshot (given, or the latest one recorded),
the trading state, the order policy and the approval policy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine.audit.store import AuditStore
from engine.clock import Clock, ClockKind
from engine.decision import Decision
from engine.execution import state as trading
from engine.execution.activity import Activity, EquityMarks
from engine.execution.broker import Broker
from engine.execution.gate import OrderIntent
from engine.execution.gateway import Controls, Gateway, OrderOutcome, client_id
from engine.execution.order_facts import BookView
from engine.execution.order_policy import OrderPolicyEvaluator
from engine.rotation import snapshot_prices
from engine.timeutil import format_utc

if TYPE_CHECKING:
    from engine.cycle import CompiledSet

#: Decisions read back, newest first, to find each symbol's latest snapshot.
_LOOK_BACK_DECISIONS = 2000


@dataclass(frozen=True)
class ManualResult:
    outcome: OrderOutcome
    decision: Decision | None
    state: trading.StateView
    facts: Mapping[str, Any]


def latest_snapshots(store: AuditStore) -> list[Mapping[str, Any]]:
    """The latest recorded snapshot of each symbol of the live system."""
    seen: dict[str, Mapping[str, Any]] = {}
    for r in store.records("decision", limit=_LOOK_BACK_DECISIONS):
        if r.body.get("run_id") is not None:
            continue
        facts = r.body.get("facts")
        if isinstance(facts, Mapping) and isinstance(facts.get("symbol"), str):
            seen.setdefault(str(facts["symbol"]), facts)
    return list(seen.values())


def _for_symbol(snapshots: Sequence[Mapping[str, Any]], symbol: str) -> Mapping[str, Any] | None:
    mine = [s for s in snapshots if s.get("symbol") == symbol]
    return max(mine, key=lambda s: str(s.get("ts"))) if mine else None


def live_controls(store: AuditStore, broker: Broker, orders: OrderPolicyEvaluator,
                  snapshots: Sequence[Mapping[str, Any]], now: datetime) -> Controls:
    """The order policy of the live system at `now`, with the execution log and equity marks
    the store holds and the prices of `snapshots`; the book's equity now is marked."""
    activity = Activity.from_store(store, None, now)
    activity.prices.update(snapshot_prices(snapshots))
    equity = BookView(broker.cash(), broker.positions(), activity.prices).equity()
    if equity is not None:  # without it the equity facts are unknown: orders fail closed
        activity.marks.mark(now, equity)
        store.append(*EquityMarks.record(None, now, equity))
    return Controls(orders, activity.prices, activity.log, activity.marks)


def manual_order(compiled: CompiledSet, store: AuditStore, broker: Broker, *, symbol: str,
                 side: str, shares: int, price: float, limit: bool,
                 snapshots: Sequence[Mapping[str, Any]] | None, now: datetime,
                 by: str) -> ManualResult:
    """Judge and send one order by `by` at `now` (the wall clock: the snapshot's facts are
    aged against it, so a stale snapshot fails closed)."""
    snaps = list(snapshots) if snapshots is not None else latest_snapshots(store)
    mine = _for_symbol(snaps, symbol)
    decision = None
    records: list[tuple[str, str, dict[str, Any]]] = []
    if mine is not None:
        decision = compiled.safety.decide(mine, clock=Clock(ClockKind.WALL, now))
        records.append(("decision", decision.decision_id,
                        {"decision": decision.to_json(), "facts": dict(mine), "run_id": None,
                         "manual": by}))
    store.append_many(records)
    state = trading.load(store)
    gateway = Gateway(store, broker, compiled.approval, requester=by,
                      controls=live_controls(store, broker, compiled.orders, snaps, now))
    order = OrderIntent(symbol, side, shares, price, broker.positions().get(symbol, 0), limit)
    facts = gateway.facts(order, now)
    anchor = decision.decision_id if decision else f"manual-{format_utc(now)}"
    outcome = gateway.submit(order, decision, state, cid=client_id(anchor, 0, order), now=now)
    return ManualResult(outcome, decision, gateway.latched or state, facts)
