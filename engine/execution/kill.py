"""The kill function (MiFID II RTS 6 Art. 12): in one decision, withdraw every matching open
order and pending approval, and latch a halt for that scope until a person resumes.

The latch and the record of who killed what, and why, are committed first, in one
transaction: from that moment nothing in the scope goes out, even if a cancellation then fails.
Then the cancellations, then one critical alert. Who may kill is the caller's to check (the
`kill` action of the access policy) before calling `kill`: the CLI and the service alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from engine.audit.store import AuditStore
from engine.execution import approvals
from engine.execution import state as trading
from engine.execution.broker import Broker
from engine.execution.gateway import cancel_orders
from engine.ids import new_id
from engine.monitoring.alerting.engine import AlertEngine
from engine.timeutil import format_utc

KIND = "kill"


@dataclass(frozen=True)
class KillResult:
    kill_id: str
    scope: str
    state: trading.StateView
    #: Open orders the broker withdrew.
    cancelled_orders: tuple[str, ...]
    cancelled_approvals: tuple[str, ...]
    #: Open orders the market filled before the cancellation reached the broker: they traded.
    filled_orders: tuple[str, ...] = ()


def scope_text(symbols: Sequence[str], side: str | None) -> str:
    what = ", ".join(sorted(set(symbols))) if symbols else "the whole book"
    return what + (f" ({side} orders)" if side else "")


def kill(store: AuditStore, broker: Broker, *, symbols: Sequence[str], side: str | None,
         by: str, reason: str, now: datetime, run_id: str | None = None,
         alerts: AlertEngine | None = None) -> KillResult:
    """Kill `symbols` (empty: every symbol) on `side` ("BUY", "SELL"; None: both), by the
    person `by`, who has been authorised for the `kill` action. The critical alert goes to
    `alerts` (default: recorded in the store, handed to no sink). Raises
    trading.ResumeRefused without a name or a reason, or with another side."""
    if side not in (None, "BUY", "SELL"):
        raise trading.ResumeRefused(f"side must be BUY or SELL, got {side!r}")
    ts = format_utc(now)
    current = trading.load(store, run_id)
    view = trading.kill(current, symbols, side, by=by, reason=reason, ts=ts)

    def matches(symbol: str, order_side: str) -> bool:
        return (not symbols or symbol in symbols) and (side is None or order_side == side)

    orders = [o for o in broker.open_orders() if matches(o.symbol, o.side.value)]
    waiting = [i for i in approvals.pending(store, run_id) if matches(i.symbol, i.side)]
    kill_id = new_id()
    scope = scope_text(symbols, side)
    store.append_many([
        (KIND, kill_id, {
            "run_id": run_id, "ts": ts, "by": by, "reason": reason,
            "symbols": sorted(set(symbols)), "side": side, "scope": scope,
            "orders": [o.client_id for o in orders], "approvals": [i.item_id for i in waiting],
            "summary": f"kill of {scope} by {by}: {reason}"}),
        trading.change(view, current, run_id=run_id, by=by, kill_id=kill_id),
    ])
    done = cancel_orders(store, broker, orders, now, rule=trading.KILL_RULE,
                         reason=f"kill by {by}: {reason}", run_id=run_id)
    withdrawn = []
    for item in waiting:
        try:
            approvals.decide(store, item.item_id, outcome="rejected", by=by,
                             reason=f"kill: {reason}", now=now)
        except approvals.ApprovalError:
            continue  # decided or expired a moment ago: it is not waiting any more
        withdrawn.append(item.item_id)
    (alerts or AlertEngine(store, None, run_id or "live")).on_kill(
        now, scope, by, reason, len(done.cancelled) + len(withdrawn), filled=len(done.filled))
    return KillResult(kill_id, scope, view, done.cancelled, tuple(withdrawn), done.filled)
