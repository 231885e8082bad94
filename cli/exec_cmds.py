"""paper, approvals, resume and step: running the book from the command line."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from cli.common import (
    ClockName,
    ClockOpt,
    Format,
    FormatOpt,
    MaxSnapshotOpt,
    PoliciesOpt,
    clock_of,
    fail,
    load_book_file,
    load_policies,
    load_snapshots,
    out,
    resolve_ref,
)
from cli.identity import DEFAULT_ACCESS, AccessOpt, ByOpt, authorised
from engine.audit.store import DEFAULT_PATH, AuditError, AuditStore
from engine.clock import wall_now
from engine.execution import approvals
from engine.execution import state as trading
from engine.execution.gateway import reconcile
from engine.execution.paper import PaperAccountError, PaperBroker, init_account
from engine.factsource import DEFAULT_MAX_SNAPSHOT_BYTES
from engine.ids import short
from engine.timeutil import format_utc

if TYPE_CHECKING:
    from engine.cycle import CycleResult

DEFAULT_BROKER = ".fugger/paper.db"

paper_app = typer.Typer(help="The embedded paper broker: an account in one SQLite file.",
                        no_args_is_help=True)
approvals_app = typer.Typer(help="Orders waiting for a person: list, approve, reject.",
                            no_args_is_help=True)

AuditOpt = Annotated[str, typer.Option("--audit", metavar="DB", help="The audit store.")]
BrokerOpt = Annotated[str, typer.Option("--broker", metavar="DB",
                                        help="The paper account file.")]


def _store(path: str, create: bool = True) -> AuditStore:
    try:
        return AuditStore(path, create=create)
    except AuditError as e:
        fail(str(e))


def _broker(path: str, **settings: Any) -> PaperBroker:
    if not Path(path).exists():
        fail(f"{path}: no paper account; create one with: fugger paper init --cash 1000000")
    try:
        return PaperBroker(path, **settings)
    except (PaperAccountError, ValueError) as e:
        fail(str(e))


@paper_app.command("init")
def paper_init(
    cash: Annotated[float, typer.Option(metavar="USD", help="Starting cash.", min=0)],
    positions: Annotated[str | None, typer.Option(metavar="FILE", help="A book file (YAML or "
                                                  "JSON with cash and positions) to start "
                                                  "from; its positions are used.")] = None,
    symbols: Annotated[str | None, typer.Option(
        metavar="LIST", help="Comma-separated tradable symbols; default: any.")] = None,
    broker: BrokerOpt = DEFAULT_BROKER,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing account.")] = False,
    audit: AuditOpt = DEFAULT_PATH,
    access: AccessOpt = DEFAULT_ACCESS,
) -> None:
    """Create the paper account (the admin role; recorded in the audit store)."""
    if Path(broker).exists() and not force:
        fail(f"{broker}: a paper account already exists; pass --force to replace it (its "
             "cash, positions and orders are lost)")
    held = dict(load_book_file(positions).positions) if positions else {}
    tradable = [s.strip() for s in symbols.split(",") if s.strip()] if symbols else None
    with _store(audit) as store:
        authorised(store, access, "init_account", target=broker)
    try:
        Path(broker).parent.mkdir(parents=True, exist_ok=True)
        init_account(broker, cash, held, tradable, overwrite=force)
    except (PaperAccountError, ValueError) as e:
        fail(str(e))
    out.print(f"paper account {broker}: cash {cash:,.2f}, "
              f"{len(held)} position(s), symbols {', '.join(tradable) if tradable else 'any'}")


@paper_app.command("show")
def paper_show(broker: BrokerOpt = DEFAULT_BROKER,
               fmt: FormatOpt = Format.text,
               orders: Annotated[int, typer.Option(
                   metavar="N", help="How many recent orders.")] = 20) -> None:
    """Cash, positions and the latest orders of the paper account."""
    summary = _broker(broker).account_summary()
    if fmt is Format.json:
        sys.stdout.write(json.dumps({
            "cash": summary.cash, "positions": summary.positions,
            "symbols": summary.symbols,
            "orders": [{"client_id": o.client_id, "symbol": o.symbol, "side": o.side.value,
                        "shares": o.shares, "status": o.status.value,
                        "fill_price": o.fill_price, "commission": o.commission,
                        "reason": o.reason, "submitted_at": o.submitted_at}
                       for o in summary.orders]}) + "\n")
        return
    out.print(f"paper account {broker}: cash {summary.cash:,.2f}")
    table = Table("symbol", "shares", title="positions", title_justify="left")
    for sym, n in sorted(summary.positions.items()):
        table.add_row(sym, str(n))
    out.print(table)
    recent = Table("client id", "symbol", "side", "shares", "status", "fill", "reason",
                   title=f"last {orders} orders", title_justify="left")
    for o in summary.orders[-orders:]:
        recent.add_row(short(o.client_id), o.symbol, o.side.value, str(o.shares), o.status.value,
                       f"{o.fill_price:g}" if o.fill_price else "-", o.reason or "")
    out.print(recent)


@approvals_app.command("list")
def approvals_list(audit: AuditOpt = DEFAULT_PATH,
                   all_items: Annotated[bool, typer.Option("--all", help="Decided items "
                                                           "too.")] = False,
                   fmt: FormatOpt = Format.text) -> None:
    """Orders waiting for approval (expired ones are rejected first, and recorded)."""
    with _store(audit, create=False) as store:
        approvals.expire_due(store, wall_now())
        queue = approvals.ApprovalQueue(store)
        items = queue.items() if all_items else queue.pending()
    if fmt is Format.json:
        for i in items:
            sys.stdout.write(json.dumps(i.to_json()) + "\n")
        return
    if not items:
        out.print("no order is waiting for approval")
        return
    table = Table("id", "order", "rule", "requested", "expires", "outcome",
                  title="approval queue", title_justify="left")
    for i in items:
        table.add_row(short(i.item_id), f"{i.side} {i.shares} {i.symbol} @ {i.price:g}", i.rule,
                      i.requested_at, i.expires_at,
                      f"{i.outcome} by {i.decided_by}" if i.outcome else
                      f"pending ({i.approvers_required} approver(s), not {i.requested_by})")
    out.print(table)


def _decide(typed: str, outcome: str, by: str, reason: str, audit: str, access: str) -> None:
    with _store(audit, create=False) as store:
        item_id = resolve_ref(store, typed, kind=approvals.REQUESTED, what="approval item")
        actor = authorised(store, access, "approve" if outcome == "approved" else "reject",
                           by=by, target=item_id)
        try:
            item = approvals.decide(store, item_id, outcome=outcome, by=actor.name,
                                    reason=reason, now=wall_now())
        except approvals.ApprovalError as e:
            fail(str(e))
        given = len(approvals.approvals_of(store, item_id))
    if item.pending:
        out.print(f"{item.item_id}: approval {given} of {item.approvers_required} by "
                  f"{actor.name}; waiting for another person")
        return
    out.print(f"{item.item_id}: {item.side} {item.shares} {item.symbol} {item.outcome} by "
              f"{item.decided_by}"
              + ("; it is sent by the next cycle if the rails still allow it"
                 if item.outcome == "approved" else ""))


@approvals_app.command("approve")
def approve(item_id: Annotated[str, typer.Argument(
                metavar="ID", help="The item's id, or a unique start of it (as listed).")],
            reason: Annotated[str, typer.Option(metavar="TEXT", help="Why (recorded).")],
            by: ByOpt = "",
            audit: AuditOpt = DEFAULT_PATH,
            access: AccessOpt = DEFAULT_ACCESS) -> None:
    """Approve a waiting order (the approver role; never the person who requested it). An
    order the approval policy gives N approvers is approved by the Nth distinct person. It is
    still checked against the rails before it is sent."""
    _decide(item_id, "approved", by, reason, audit, access)


@approvals_app.command("reject")
def reject(item_id: Annotated[str, typer.Argument(
               metavar="ID", help="The item's id, or a unique start of it (as listed).")],
           reason: Annotated[str, typer.Option(metavar="TEXT", help="Why (recorded).")],
           by: ByOpt = "",
           audit: AuditOpt = DEFAULT_PATH,
           access: AccessOpt = DEFAULT_ACCESS) -> None:
    """Reject a waiting order (the approver role)."""
    _decide(item_id, "rejected", by, reason, audit, access)


def resume(reason: Annotated[str, typer.Option(
               metavar="TEXT", help="Why it is safe to resume (recorded).")],
           by: ByOpt = "",
           reduce_only: Annotated[bool, typer.Option(
               "--reduce-only", help="Re-enable a book an order rule made reduce-only (the "
                                     "reenable action).")] = False,
           audit: AuditOpt = DEFAULT_PATH,
           access: AccessOpt = DEFAULT_ACCESS) -> None:
    """Lift a latched halt and every kill (the risk role, with a reason), or with
    --reduce-only re-enable a book an order rule made reduce-only. A resume is refused while a
    halting rule still fires in the latest decisions."""
    with _store(audit, create=False) as store:
        actor = authorised(store, access, "reenable" if reduce_only else "resume", by=by,
                           target="book")
        current = trading.load(store)
        verdicts = trading.latest_verdicts(store)
        ts = format_utc(wall_now())
        try:
            view = (trading.reenable(current, by=actor.name, reason=reason, ts=ts)
                    if reduce_only else
                    trading.resume(current, verdicts, by=actor.name, reason=reason, ts=ts))
        except trading.ResumeRefused as e:
            fail(f"{'re-enable' if reduce_only else 'resume'} refused: {e}")
        trading.record(store, view, current, extra={"run_id": None, "by": actor.name,
                                                    "via": actor.via, "resumed": True})
    out.print(f"trading {'re-enabled' if reduce_only else 'resumed'} by {actor.name}: "
              f"{reason}; now {view.state.value}", markup=False)


def step(
    policies: PoliciesOpt = "policies",
    facts: Annotated[str, typer.Option("--facts", "-f", metavar="FILE",
                                       help="This cycle's snapshots, one per symbol.")] = "-",
    audit: AuditOpt = DEFAULT_PATH,
    broker: BrokerOpt = DEFAULT_BROKER,
    fmt: FormatOpt = Format.text,
    access: AccessOpt = DEFAULT_ACCESS,
    clock: ClockOpt = ClockName.wall,
    max_snapshot_bytes: MaxSnapshotOpt = DEFAULT_MAX_SNAPSHOT_BYTES,
    sinks: Annotated[str | None, typer.Option(metavar="FILE", help="Alert sinks config "
                                                                   "(YAML); alerts are kept "
                                                                   "in the audit store "
                                                                   "either way.")] = None,
) -> None:
    """One cycle: decide, plan from the broker's book, gate, queue, send (the trader role;
    a policy set other than the one in force also needs admin). Prints each order with its
    status and the rule behind it. On the wall clock (the default) a snapshot older than the
    policy's max_fact_age, or dated ahead of now, decides the fail-closed action. A halt, or a
    broker that fails an order, is an alert."""
    # Imported here: the cycle needs pandas, which other commands should not pay for.
    from engine.cycle import CompiledSet, run_cycle
    from engine.monitoring.alerting.engine import AlertEngine
    from engine.monitoring.sink_config import SinkConfigError, load_sinks

    ps = load_policies([policies])
    snaps = load_snapshots(facts, max_snapshot_bytes=max_snapshot_bytes)
    paper = _broker(broker)
    sink_list = []
    if sinks:
        try:
            sink_list = load_sinks(sinks)
        except SinkConfigError as e:
            fail(str(e))
    try:
        compiled = CompiledSet(ps)
    except ValueError as e:
        fail(str(e))
    ts = max((str(s.get("ts")) for s in snaps if isinstance(s, dict) and s.get("ts")),
             default=format_utc(wall_now()))
    with _store(audit) as store:
        actor = authorised(store, access, "trade")
        live = store.active("live")
        if live is None or live.ref != ps.hash:
            authorised(store, access, "activate", target=ps.hash)
            store.record_activation(ps, actor=actor.name, scope="live")
        settled = reconcile(store, paper)
        before = trading.load(store).state
        alerts = (AlertEngine.with_sinks(store, sink_list, "live", settings=ps.alert_settings)
                  if sink_list else AlertEngine(store, None, "live", settings=ps.alert_settings))

        def broker_error(client_id: str, error: str) -> None:
            alerts.on_broker_error(ts, client_id, error)

        with alerts:
            try:
                result = run_cycle(compiled, store, paper, snaps, requester=actor.name,
                                   on_broker_error=broker_error, clock=clock_of(clock))
            except ValueError as e:
                fail(str(e))
            # Each step is its own process: the state before the cycle tells a new halt from
            # one already announced, so a latched halt does not alert on every step.
            if before is not trading.TradingState.HALTED:
                alerts.on_trading_state(result.ts, result.state.state.value, result.state.rule)
    _print_cycle(result, settled, fmt)


def _print_cycle(result: CycleResult, settled: list[tuple[str, str]], fmt: Format) -> None:
    rows = [{"client_id": o.client_id, "symbol": o.order.symbol, "side": o.order.side,
             "shares": o.order.shares, "price": o.order.price, "status": o.status,
             "rule": o.rule, "reason": o.reason} for o in result.outcomes]
    rot = result.rotation
    snapshots = Counter(d.symbol for d in result.made if d.symbol is not None)
    doc: dict[str, Any] = {
        "ts": result.ts,
        "trading_state": result.state.to_json(),
        "decisions": {s: {"decision_id": d.decision_id, "action": d.action.value,
                          "rule": d.rule, "snapshots": snapshots.get(s, 1)}
                      for s, d in result.decisions.items()},
        "all_decisions": [{"decision_id": d.decision_id, "symbol": d.symbol,
                           "action": d.action.value, "rule": d.rule} for d in result.made],
        "rebalance": ({"triggered": rot.trigger.triggered, "rule": rot.trigger.rule,
                       "source": rot.trigger.source, "reason": rot.trigger.reason}
                      if rot else None),
        "orders": rows,
        "expired": [i.item_id for i in result.expired],
        "settled_after_restart": [{"client_id": c, "status": s} for c, s in settled],
    }
    if fmt is Format.json:
        sys.stdout.write(json.dumps(doc) + "\n")
        return
    out.print(f"cycle {result.ts}: trading {result.state.state.value}"
              + (f" ({result.state.reason})" if result.state.reason else ""))
    for sym, d in doc["decisions"].items():
        out.print(f"  {sym}: {d['action']}" + (f" by {d['rule']}" if d["rule"] else "")
                  + (f" (the most restrictive of {d['snapshots']} snapshots)"
                     if d["snapshots"] > 1 else ""))
    if rot:
        out.print(f"rebalance: {'yes' if rot.trigger.triggered else 'no'}"
                  + (f" ({rot.trigger.rule})" if rot.trigger.rule else "")
                  + f": {rot.trigger.reason}")
    for c, s in settled:
        out.print(f"settled after restart: {c} -> {s}")
    if not rows:
        out.print("no order")
        return
    table = Table("order", "symbol", "side", "shares", "price", "status", "rule",
                  title="orders", title_justify="left")
    for r in rows:
        table.add_row(short(str(r["client_id"])), str(r["symbol"]), str(r["side"]),
                      str(r["shares"]), f"{r['price']:g}", str(r["status"]), str(r["rule"] or "-"))
    out.print(table)
