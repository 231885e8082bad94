"""What the service holds between requests: the compiled policy set (watched, the last good one
kept), the audit store, the paper broker (one connection for the service's life) and each
symbol's latest decision. Every operation is the engine call the command line makes; one lock
serialises them, so a request sees a whole cycle or none of it. Operations that record run on
the group-commit writer (engine/service/group_commit): the records of requests that arrive
together are committed in one durable transaction before any of them is answered."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from engine.access.model import SYSTEM
from engine.audit import activation
from engine.audit.store import AuditStore
from engine.clock import WALL, recorded_clock, wall_now
from engine.cycle import CompiledSet, run_cycle
from engine.decision import Decision
from engine.execution import approvals
from engine.execution import kill as killing
from engine.execution import state as trading
from engine.execution.gate import OrderIntent
from engine.execution.gateway import Gateway, OrderOutcome, client_id, latest_status, reconcile
from engine.execution.manual import live_controls
from engine.execution.paper import PaperBroker
from engine.explain import rule_checks
from engine.monitoring.alerting.engine import AlertEngine
from engine.order_messages import OrderIn, OrderOut
from engine.policy.watch import PolicyWatcher, WatchEvent
from engine.service.errors import bad_request, conflict
from engine.service.group_commit import GroupCommit
from engine.timeutil import format_utc, parse_utc

T = TypeVar("T")


class Runtime:
    def __init__(self, policies: str, store: AuditStore, broker: PaperBroker, broker_path: str,
                 alerts: AlertEngine | None = None,
                 on_event: Callable[[WatchEvent], None] | None = None,
                 started_by: str = "fuggerbot:serve",
                 now: Callable[[], datetime] = wall_now) -> None:
        self.store = store
        self.broker = broker
        self.broker_path = broker_path
        self.alerts = alerts
        # Re-entrant: work on the writer holds it and may read through the same helpers.
        self.lock = threading.RLock()
        self._open = ExitStack()
        self._open.enter_context(broker.session(shared=True))
        self.events: list[WatchEvent] = []
        self._on_event = on_event
        self.started_by = started_by
        self._now = now
        self.reloads = 0
        self.reload_failures = 0
        self.watcher: PolicyWatcher[CompiledSet] = PolicyWatcher(
            [policies], self._event, compile=CompiledSet,
            may_remove=lambda s: activation.explicitly_active(store, s))
        self.queue = approvals.ApprovalQueue(store)
        self.latest: dict[str, Decision] = {}
        #: The facts each symbol's latest decision was made on (to show them against the rails).
        self.latest_facts: dict[str, Mapping[str, Any]] = {}
        self.compiled: CompiledSet | None = None
        self.poll()
        reconcile(store, broker)
        self.writer = GroupCommit(store, self.lock)

    def close(self) -> None:
        """Commit the work handed in, stop the writer, close the broker's connection."""
        self.writer.close()
        with self.lock:
            self._open.close()

    def write(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the group-commit writer; its records are committed when this returns.
        On the writer already (inside such work), run it there."""
        if self.writer.on_writer():
            return fn()
        return self.writer.run(fn)

    def _event(self, event: WatchEvent) -> None:
        self.events.append(event)
        if event.kind == "rejected":
            self.reload_failures += 1
            if self.alerts is not None:
                self.alerts.on_policy_load_failed(
                    wall_now(), [str(p) for p in event.problems] or [event.message])
        elif event.kind == "activated":
            self.reloads += 1
        if self._on_event is not None:
            self._on_event(event)
        del self.events[:-50]

    def poll(self) -> None:
        """Pick up a changed, valid policy set; a broken one leaves the last good set in force
        and is reported (an event, an alert, a failure count)."""
        fresh = self.watcher.poll()
        if fresh is not None:
            live = self.store.active("live")
            if live is None or live.ref != fresh.policy_set.hash:
                self.store.record_activation(fresh.policy_set, actor=self.started_by,
                                             scope="live")
            self.compiled = fresh
            self.latest.clear()  # decisions of the old set do not gate orders of the new one
            self.latest_facts.clear()

    def decide(self, snapshots: Sequence[Mapping[str, Any]], *,
               requester: str = SYSTEM) -> list[Decision]:
        """One cycle of the engine on the wall clock (engine/cycle, as `fugger step` runs it,
        for the symbols sent): each snapshot decided, the trading state latched, open orders
        cancelled on a halt, approved orders of these symbols sent through the gate; all
        committed before this returns. A change of trading state is alerted."""
        return self.write(lambda: self._decide(snapshots, requester))

    def _decide(self, snapshots: Sequence[Mapping[str, Any]],
                requester: str) -> list[Decision]:
        with self.lock:
            self.poll()
            compiled = self._need_policies()
            result = run_cycle(compiled, self.store, self.broker, snapshots, clock=WALL,
                               requester=requester, queue=self.queue, partial=True,
                               on_broker_error=self._broker_error)
            self.latest.update(result.decisions)
            facts = {d.decision_id: s for d, s in zip(result.made, snapshots, strict=True)}
            self.latest_facts.update({sym: facts[d.decision_id]
                                      for sym, d in result.decisions.items()})
            self._state_alert(result.ts, result.state)
            return list(result.made)

    def orders(self, intents: Sequence[OrderIn], *,
               requester: str) -> list[OrderOut]:
        """Each intent through the one gateway (rails, trading state, order policy, approval
        policy); a client id already recorded is reported, never sent again. An order held for
        approval names `requester`, who cannot approve it."""
        return self.write(lambda: self._orders(intents, requester))

    def _orders(self, intents: Sequence[OrderIn], requester: str) -> list[OrderOut]:
        with self.lock:
            compiled = self._need_policies()
            now = self._now()
            approvals.expire_due(self.store, now)
            controls = live_controls(self.store, self.broker, compiled.orders,
                                     [d.facts for d in self.latest.values()], now)
            gateway = Gateway(self.store, self.broker, compiled.approval, requester=requester,
                              controls=controls)
            state = trading.load(self.store)
            positions = self.broker.positions()
            out = []
            for n, i in enumerate(intents):
                intent = OrderIntent(i.symbol, i.side, i.shares, i.price,
                                     positions.get(i.symbol, 0))
                decision = _usable(self.latest.get(i.symbol), compiled, now)
                cid = i.client_id or client_id(
                    decision.decision_id if decision else f"none-{format_utc(now)}", n, intent)
                seen = latest_status(self.store, cid)
                if seen is not None:
                    out.append(OrderOut(cid, seen, None, "this client id was already "
                                           "submitted; it is not sent twice", True))
                    continue
                o: OrderOutcome = gateway.submit(intent, decision, state, cid=cid, now=now)
                out.append(OrderOut(o.client_id, o.status, o.rule, o.reason))
            return out

    def resume(self, by: str, reason: str) -> trading.StateView:
        return self.write(lambda: self._resume(by, reason))

    def _resume(self, by: str, reason: str) -> trading.StateView:
        with self.lock:
            current = trading.load(self.store)
            try:
                view = trading.resume(current, trading.latest_verdicts(self.store), by=by,
                                      reason=reason, ts=format_utc(wall_now()))
            except trading.ResumeRefused as e:
                raise conflict(f"resume refused: {e}") from None
            trading.record(self.store, view, current, extra={"run_id": None, "by": by,
                                                             "via": "api"})
            self._state_alert(view.since or format_utc(wall_now()), view)
            return view

    def kill(self, symbols: Sequence[str], side: str | None, by: str,
             reason: str) -> killing.KillResult:
        """The kill function, the same as `fugger kill`: cancel the matching open orders and
        pending approvals and latch a halt for the scope, on the group-commit writer."""
        def work() -> killing.KillResult:
            with self.lock:
                now = wall_now()
                try:
                    return killing.kill(self.store, self.broker, symbols=symbols, side=side,
                                        by=by, reason=reason, now=now, alerts=self.alerts)
                except trading.ResumeRefused as e:
                    raise conflict(f"kill refused: {e}") from None
        return self.write(work)

    def decide_approval(self, item_id: str, outcome: str, by: str,
                        reason: str) -> approvals.ApprovalItem:
        if not reason.strip():
            raise bad_request("a reason is required", "reason")

        def settle() -> approvals.ApprovalItem:
            try:
                return approvals.decide(self.store, item_id, outcome=outcome, by=by,
                                        reason=reason, now=wall_now())
            except approvals.ApprovalError as e:
                raise conflict(str(e)) from None
        return self.write(settle)

    def rails(self) -> dict[str, list[dict[str, Any]]]:
        """Per symbol, the facts of its latest decision against every safety rule, each
        comparison with how far it is from tripping (engine/explain), as of that decision."""
        with self.lock:
            if self.compiled is None:
                return {}
            out = {}
            for sym, d in self.latest.items():
                facts = self.latest_facts.get(sym)
                if facts is None:
                    continue
                values = self.compiled.safety.checked_values(
                    facts, clock=recorded_clock(d.to_json()))
                out[sym] = [c.to_json() for c in rule_checks(
                    self.compiled.policy_set, {f.rule for f in d.fired}, values)]
            return out

    def pending(self) -> list[approvals.ApprovalItem]:
        with self.lock:
            approvals.expire_due(self.store, wall_now())
            return approvals.ApprovalQueue(self.store).pending()

    def healthy(self) -> tuple[bool, str]:
        """A valid policy set is in force and the stores can be written."""
        with self.lock:
            self.poll()
        if self.compiled is None:
            return False, "no valid policy set is active"
        for path in (self.store.path, Path(self.broker_path)):
            if not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
                return False, f"{path} is not writable"
        return True, "ok"

    def _state_alert(self, ts: str, view: trading.StateView) -> None:
        if self.alerts is not None:
            self.alerts.on_trading_state(ts, view.state.value, view.rule)

    def _broker_error(self, cid: str, error: str) -> None:
        if self.alerts is not None:
            self.alerts.on_broker_error(format_utc(wall_now()), cid, error)

    def _need_policies(self) -> CompiledSet:
        if self.compiled is None:
            raise conflict("no valid policy set is active; every decision would fail closed")
        return self.compiled


def _usable(decision: Decision | None, compiled: CompiledSet, now: datetime) -> Decision | None:
    """The symbol's latest decision while it is no older than the strictest max_fact_age of
    the safety policies: an order never rests on facts the rails would call stale. Past that
    the gate sees no decision and denies (decision-missing) until the bot decides again."""
    if decision is None:
        return None
    ages = [p.max_fact_age for p in compiled.policy_set.of_kind("SafetyPolicy")
            if p.max_fact_age is not None]
    if ages and now - parse_utc(decision.decided_at) > min(ages):
        return None
    return decision
