"""Sending orders: through the gate, into the approval queue or out to the broker, each step
recorded in the audit store with its safety context before and after it happens.

Exactly once: an order's client id derives from its decision and plan line. Before the broker
is called an `order` record with status `submitting` is committed; after a crash, `reconcile`
asks the broker what became of every order left in that state, and the broker itself refuses a
second order with a client id it has seen.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from engine.access.model import SYSTEM
from engine.audit.store import AuditStore
from engine.decision import Decision
from engine.execution import approvals
from engine.execution import state as trading
from engine.execution.activity import EquityMarks, ExecutionLog
from engine.execution.approval_policy import ApprovalEvaluator
from engine.execution.broker import (
    Broker,
    BrokerError,
    BrokerOrder,
    OrderRequest,
    OrderStatus,
    Side,
)
from engine.execution.gate import GateResult, OrderIntent, Verdict, gate
from engine.execution.order_facts import BookView, order_facts
from engine.execution.order_policy import OrderPolicyEvaluator
from engine.execution.records import ORDER
from engine.execution.state import StateView
from engine.timeutil import format_utc, parse_utc

MAX_TRIES = 3
#: The execution log's status of an order in each broker status (the others are the same).
_RECORDED = {"filled": "filled", "open": "sent"}


def client_id(decision_id: str, line_no: int, order: OrderIntent) -> str:
    text = f"{decision_id}|{line_no}|{order.symbol}|{order.side}|{order.shares}"
    return "o-" + hashlib.sha256(text.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class OrderOutcome:
    client_id: str
    order: OrderIntent
    status: str  # filled | sent | denied | pending_approval | rejected | failed
    rule: str | None
    reason: str
    broker_order: BrokerOrder | None = None


@dataclass
class Controls:
    """The order policy with what its facts read: the reference prices of this cycle, the
    execution log and the equity marks."""

    policy: OrderPolicyEvaluator
    prices: dict[str, float]
    log: ExecutionLog
    marks: EquityMarks

    @classmethod
    def fresh(cls, policy: OrderPolicyEvaluator) -> Controls:
        """The controls with no history yet: an empty execution log, no equity mark."""
        return cls(policy, {}, ExecutionLog(), EquityMarks())


class Gateway:
    def __init__(self, store: AuditStore, broker: Broker, approval: ApprovalEvaluator, *,
                 run_id: str | None = None, retry_sleep: Callable[[float], None] = time.sleep,
                 on_broker_error: Callable[[str, str], None] | None = None,
                 requester: str = SYSTEM, controls: Controls) -> None:
        self.store = store
        self.requester = requester
        self.broker = broker
        self.approval = approval
        self.run_id = run_id
        self._sleep = retry_sleep
        self._on_broker_error = on_broker_error
        self.controls = controls
        #: The state after a latch an order rule set during this gateway's life.
        self.latched: StateView | None = None

    def facts(self, order: OrderIntent, now: datetime) -> dict[str, Any]:
        """The order and book facts of `order` now (none when the set has no order policy:
        nothing would read them)."""
        c = self.controls
        if not c.policy.active:
            return {}
        book = BookView(self.broker.cash(), self.broker.positions(), c.prices)
        return order_facts(order, book, c.log, c.marks, now)

    def submit(self, order: OrderIntent, decision: Decision | None, state: StateView, *,
               cid: str, now: datetime, approved_item: str | None = None,
               market_price: float | None = None) -> OrderOutcome:
        """The one way an order reaches the broker. An approved order (`approved_item`) goes
        out only while its approval is unexpired at `now` and at `market_price`, this cycle's
        price, within the approval policy's tolerance of the price approved."""
        state = self.latched or state
        if approved_item is not None:
            item = approvals.get(self.store, approved_item)
            denial = (_approval_problem(item, approved_item, cid, order)
                      or _approval_lapsed(item, now, market_price, self.approval.price_tolerance))
            if denial:
                denied = GateResult(Verdict.DENIED, *denial)
                self._record(cid, order, "denied", denied, decision, now,
                             extra={"market_price": market_price})
                return OrderOutcome(cid, order, "denied", denied.rule, denied.reason)
            assert item is not None and market_price is not None
            order = replace(order, price=market_price)
            self._record(cid, order, "approved",
                         GateResult(Verdict.SEND, item.rule, f"approved by {item.decided_by}"),
                         decision, now, extra={"approved_by": item.decided_by,
                                               "approved_price": item.price})
        result = gate(order, decision, state, self.approval,
                      approved=approved_item is not None, controls=self.controls.policy,
                      order_facts=self.facts(order, now))
        if result.latch is not None:
            self._latch(state, result, now)
        if result.verdict is Verdict.DENIED:
            self._record(cid, order, "denied", result, decision, now)
            return OrderOutcome(cid, order, "denied", result.rule, result.reason)
        if result.verdict is Verdict.PENDING_APPROVAL:
            assert decision is not None
            approvals.request(self.store, item_id=cid, symbol=order.symbol, side=order.side,
                              shares=order.shares, price=order.price, rule=result.rule or "",
                              decision_id=decision.decision_id, requested_at=now,
                              ttl_seconds=self.approval.ttl_seconds,
                              context=self._context(decision, order),
                              approvers=result.approvers, requested_by=self.requester)
            self._record(cid, order, "pending_approval", result, decision, now)
            return OrderOutcome(cid, order, "pending_approval", result.rule, result.reason)
        return self._send(cid, order, result, decision, now)

    def _latch(self, state: StateView, result: GateResult, now: datetime) -> None:
        """Record the halt or reduce-only an order rule asked for; a halt cancels every open
        order, as a halt of the rails does."""
        assert result.latch is not None
        # The rule that asked for the latch: an order it lets through carries no gate rule.
        rule = (result.controls.rule if result.controls is not None else None) or \
            result.rule or result.latch.value
        ts = format_utc(now)
        view = trading.latch(state, result.latch.value, rule,
                             f"{rule} fired on an order ({result.latch.value})", ts)
        if view == state:
            return
        self.latched = view
        self.store.append(*trading.change(view, state, run_id=self.run_id))
        if view.state is trading.TradingState.HALTED:
            self.cancel_open(now, rule)

    def _send(self, cid: str, order: OrderIntent, result: GateResult,
              decision: Decision | None, now: datetime) -> OrderOutcome:
        self._record(cid, order, "submitting", result, decision, now)
        self.controls.log.note_sent(now, order.symbol, order.side, order.shares)
        self.store.durable_before_effect()
        request = self._request(cid, order)
        last_error = ""
        for attempt in range(1, MAX_TRIES + 1):
            try:
                placed = self.broker.submit(request)
                break
            except BrokerError as e:
                last_error = str(e)
                if attempt < MAX_TRIES:
                    self._sleep(0.05 * 2 ** (attempt - 1))
        else:
            failed = GateResult(result.verdict, "broker-error", last_error)
            self._record(cid, order, "failed", failed, decision, now,
                         extra={"error": last_error, "tries": MAX_TRIES})
            if self._on_broker_error is not None:
                self._on_broker_error(cid, last_error)
            return OrderOutcome(cid, order, "failed", "broker-error", last_error)
        return self._placed(cid, order, placed, result, decision, now)

    def _request(self, cid: str, order: OrderIntent) -> OrderRequest:
        """A market order goes at its price; a limit order is sent with the market's reference
        price and its limit, so the broker can tell whether it fills now or rests."""
        if not order.limit:
            return OrderRequest(cid, order.symbol, Side(order.side), order.shares, order.price)
        market = self.controls.prices.get(order.symbol)
        return OrderRequest(cid, order.symbol, Side(order.side), order.shares,
                            market if market is not None else order.price,
                            limit_price=order.price)

    def _placed(self, cid: str, order: OrderIntent, placed: BrokerOrder, result: GateResult,
                decision: Decision | None, now: datetime) -> OrderOutcome:
        status = _RECORDED.get(placed.status.value, placed.status.value)
        if status == "filled":
            self.controls.log.note_fill(now, order.symbol)
        rule = "broker-rejected" if status == "rejected" else result.rule
        self._record(cid, order, status, replace(result, rule=rule,
                                                 reason=placed.reason or result.reason),
                     decision, now,
                     extra={"broker_order_id": placed.broker_order_id,
                            "fill_price": placed.fill_price, "commission": placed.commission})
        return OrderOutcome(cid, order, status, rule, placed.reason or result.reason, placed)

    def cancel_open(self, now: datetime, reason: str) -> Withdrawal:
        """Cancel every open order at the broker (entering a halt); a fill that beat the
        cancellation counts in the execution log like any other fill."""
        orders = self.broker.open_orders()
        done = cancel_orders(self.store, self.broker, orders, now, rule=reason, reason=reason,
                             run_id=self.run_id)
        symbols = {o.client_id: o.symbol for o in orders}
        for cid in done.filled:
            self.controls.log.note_fill(now, symbols[cid])
        return done

    def _context(self, decision: Decision | None, order: OrderIntent) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "decision_id": decision.decision_id if decision else None,
            "action": decision.action.value if decision else None,
            "deciding_rule": decision.rule if decision else None,
            "facts_hash": decision.facts_hash if decision else None,
            "policy_hash": decision.policy_set_hash if decision else None,
        }

    def _record(self, cid: str, order: OrderIntent, status: str, result: GateResult,
                decision: Decision | None, now: datetime,
                extra: dict[str, Any] | None = None) -> None:
        controls = ({"controls": result.controls.to_json()}
                    if result.controls is not None and status != "submitting" else {})
        body: dict[str, Any] = {
            "ts": format_utc(now), "client_id": cid, "symbol": order.symbol,
            "side": order.side, "shares": order.shares, "price": order.price,
            "status": status, "rule": result.rule, "reason": result.reason,
            **self._context(decision, order),
            "summary": f"{order.side} {order.shares} {order.symbol} @ {order.price:g}: {status}"
                       + (f" ({result.rule})" if result.rule else ""),
            **controls,
            **(extra or {}),
        }
        self.store.append(ORDER, cid, body)


@dataclass(frozen=True)
class Withdrawal:
    """What a cancellation achieved, order by order, as the broker reports it."""

    #: Withdrawn: the broker cancelled them.
    cancelled: tuple[str, ...] = ()
    #: Filled before the cancellation arrived: they traded, and are recorded as fills.
    filled: tuple[str, ...] = ()
    #: Anything else the broker reports (rejected meanwhile, or still open): client id, status.
    other: tuple[tuple[str, str], ...] = ()


def cancel_orders(store: AuditStore, broker: Broker, orders: Iterable[BrokerOrder],
                  now: datetime, *, rule: str, reason: str, run_id: str | None) -> Withdrawal:
    """Cancel `orders` at the broker, each end recorded in the execution log as the broker
    reports it: an order the market filled before the cancellation arrived is a fill, not a
    cancellation. What led to it (a halt, a kill) is committed before the broker acts."""
    cancelled: list[str] = []
    filled: list[str] = []
    other: list[tuple[str, str]] = []
    orders = list(orders)
    if orders:
        store.durable_before_effect()
    for o in orders:
        done = broker.cancel(o.client_id)
        base = {"run_id": run_id, "ts": format_utc(now), "client_id": o.client_id,
                "symbol": o.symbol, "side": o.side.value, "shares": o.shares,
                "broker_status": done.status.value}
        if done.status is OrderStatus.CANCELLED:
            store.append(ORDER, o.client_id, {
                **base, "status": "cancelled", "rule": rule, "reason": reason,
                "summary": f"cancelled: {reason}"})
            cancelled.append(o.client_id)
            continue
        status = _RECORDED.get(done.status.value, done.status.value)
        note = {"filled": "filled before the cancellation arrived",
                "rejected": "rejected by the broker before the cancellation arrived"}.get(
                    status, "the broker still holds it open: the cancellation is unconfirmed")
        store.append(ORDER, o.client_id, {
            **base, "status": status, "rule": "broker-rejected" if status == "rejected"
            else None, "reason": f"{note} ({reason})" + (f": {done.reason}" if done.reason
                                                         else ""),
            "cancel_rule": rule, "broker_order_id": done.broker_order_id,
            "fill_price": done.fill_price, "commission": done.commission,
            "summary": f"{o.side.value} {o.shares} {o.symbol}: {status} ({note})"})
        if status == "filled":
            filled.append(o.client_id)
        else:
            other.append((o.client_id, status))
    return Withdrawal(tuple(cancelled), tuple(filled), tuple(other))


def record_settled(store: AuditStore, orders: Iterable[BrokerOrder], now: datetime, *,
                   run_id: str | None) -> None:
    """Record resting orders the market filled (or the broker rejected at fill time)."""
    for o in orders:
        status = _RECORDED.get(o.status.value, o.status.value)
        store.append(ORDER, o.client_id, {
            "run_id": run_id, "ts": format_utc(now), "client_id": o.client_id,
            "symbol": o.symbol, "side": o.side.value, "shares": o.shares, "status": status,
            "rule": "broker-rejected" if status == "rejected" else None,
            "reason": o.reason or "the market reached the order's limit",
            "broker_order_id": o.broker_order_id, "fill_price": o.fill_price,
            "commission": o.commission,
            "summary": f"{o.side.value} {o.shares} {o.symbol}: {status} (resting order)"})


def _approval_problem(item: approvals.ApprovalItem | None, item_id: str, cid: str,
                      order: OrderIntent) -> tuple[str, str] | None:
    """Why an approval cannot stand for this order (rule, reason): it must exist, be approved,
    and be for exactly this order."""
    invalid = "approval-invalid"
    if item is None:
        return invalid, f"no approval item {item_id!r}"
    if item.outcome != "approved":
        return invalid, f"item {item_id} is {item.outcome or 'still pending'}, not approved"
    if item.item_id != cid or (item.symbol, item.side, item.shares) != (
            order.symbol, order.side, order.shares):
        return invalid, f"item {item_id} approved a different order"
    return None


def _approval_lapsed(item: approvals.ApprovalItem | None, now: datetime,
                     market_price: float | None, tolerance: float) -> tuple[str, str] | None:
    """Why an approval no longer covers the trade (rule, reason): a person approved that order
    at that price within its time-to-live, not whatever it has become since."""
    assert item is not None
    if parse_utc(item.expires_at) <= now:
        return ("approval-expired", f"the approval of {item.item_id} expired at "
                                    f"{item.expires_at}, before the order could be sent")
    if market_price is None or not math.isfinite(market_price) or market_price <= 0:
        return ("approval-price-unknown", f"no usable price for {item.symbol} in this cycle: "
                                          f"the approved price {item.price:g} cannot be "
                                          "checked")
    moved = abs(market_price - item.price) / item.price
    if moved > tolerance:
        return ("approval-price-moved", f"{item.symbol} is at {market_price:g}, "
                                        f"{moved:.2%} from the approved {item.price:g}; the "
                                        f"approval policy allows {tolerance:.2%}")
    return None


def latest_status(store: AuditStore, cid: str) -> str | None:
    rows = [r for r in store.find(cid) if r.kind == ORDER]
    return str(rows[-1].body.get("status")) if rows else None


def reconcile(store: AuditStore, broker: Broker) -> list[tuple[str, str]]:
    """Settle orders a crash left at `submitting`: record what the broker says became of them.
    An order the broker never received is recorded as `failed` and is not sent again: the next
    cycle plans afresh from the broker's book."""
    settled = []
    latest: dict[str, dict[str, Any]] = {}
    for r in store.iter_records(ORDER):
        latest[r.ref] = r.body
    for cid, body in latest.items():
        if body.get("status") != "submitting":
            continue
        placed = broker.order(cid)
        if placed is None:
            status, note = "failed", "the broker never received it (process stopped first)"
        else:
            status = _RECORDED.get(placed.status.value, placed.status.value)
            note = "settled after a restart from the broker's record"
        store.append(ORDER, cid, {**body, "status": status, "reason": note,
                                  "summary": f"{body.get('side')} {body.get('shares')} "
                                             f"{body.get('symbol')}: {status} ({note})"})
        settled.append((cid, status))
    return settled
