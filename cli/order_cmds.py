"""order and kill: one order by hand through the gate, and the kill function."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import Annotated, Any

import typer

from cli.common import (
    EXIT_USAGE,
    Format,
    FormatOpt,
    PoliciesOpt,
    fail,
    load_policies,
    load_snapshots,
    out,
)
from cli.exec_cmds import DEFAULT_BROKER, AuditOpt, BrokerOpt, _broker, _store
from cli.identity import DEFAULT_ACCESS, AccessOpt, ByOpt, authorised
from engine.audit.store import DEFAULT_PATH
from engine.clock import wall_now
from engine.ids import short


class SideOpt(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


def order(
    symbol: Annotated[str, typer.Option("--symbol", metavar="SYMBOL", help="The symbol to trade.")],
    side: Annotated[SideOpt, typer.Option("--side", case_sensitive=False,
                                          help="BUY or SELL.")],
    shares: Annotated[int, typer.Option("--shares", metavar="N", min=1, help="Whole shares.")],
    price: Annotated[float, typer.Option(
        "--price", metavar="PRICE", help="The order's price (its limit with --limit).")],
    limit: Annotated[bool, typer.Option("--limit", help="A limit order: it rests at the "
                                                        "broker until the market reaches "
                                                        "the price.")] = False,
    facts: Annotated[str | None, typer.Option("--facts", "-f", metavar="FILE",
                                              help="Snapshots to judge it by (default: the "
                                                   "latest recorded one of each "
                                                   "symbol).")] = None,
    policies: PoliciesOpt = "policies",
    audit: AuditOpt = DEFAULT_PATH,
    broker: BrokerOpt = DEFAULT_BROKER,
    fmt: FormatOpt = Format.text,
    access: AccessOpt = DEFAULT_ACCESS,
) -> None:
    """Send one order through the same gate as the bot's: rails (on the wall clock), trading
    state, order policy (pre-trade controls), approvals. The trader role. Prints the outcome
    and the rule behind it; exit 1 when the order is denied."""
    from engine.cycle import CompiledSet
    from engine.execution.manual import manual_order

    ps = load_policies([policies])
    snaps = load_snapshots(facts) if facts else None
    paper = _broker(broker)
    try:
        compiled = CompiledSet(ps)
    except ValueError as e:
        fail(str(e))
    try:
        with _store(audit) as store:
            actor = authorised(store, access, "trade", target=symbol)
            live = store.active("live")
            if live is None or live.ref != ps.hash:
                authorised(store, access, "activate", target=ps.hash)
                store.record_activation(ps, actor=actor.name, scope="live")
            result = manual_order(compiled, store, paper, symbol=symbol, side=side.value,
                                  shares=shares, price=price, limit=limit, snapshots=snaps,
                                  now=wall_now(), by=actor.name)
    finally:
        compiled.close()
    o = result.outcome
    doc: dict[str, Any] = {
        "client_id": o.client_id, "symbol": symbol, "side": side.value, "shares": shares,
        "price": price, "limit": limit, "status": o.status, "rule": o.rule,
        "reason": o.reason,
        "decision": ({"decision_id": result.decision.decision_id,
                      "action": result.decision.action.value, "rule": result.decision.rule}
                     if result.decision else None),
        "trading_state": result.state.to_json(),
        "facts": dict(result.facts),
    }
    if fmt is Format.json:
        sys.stdout.write(json.dumps(doc) + "\n")
    else:
        out.print(f"{side.value} {shares} {symbol} @ {price:g}{' limit' if limit else ''}: "
                  f"{o.status}" + (f" ({o.rule})" if o.rule else ""), markup=False)
        out.print(f"  {o.reason}", markup=False)
        out.print(f"  order {short(o.client_id)}; trading {result.state.state.value}")
    if o.status in ("denied", "rejected", "failed"):
        raise typer.Exit(1)


def kill(
    reason: Annotated[str, typer.Option("--reason", metavar="TEXT", help="Why (recorded).")],
    symbol: Annotated[list[str] | None, typer.Option(
        "--symbol", metavar="SYMBOL", help="A symbol to kill (repeat for more).")] = None,
    side: Annotated[SideOpt | None, typer.Option("--side", case_sensitive=False,
                                                 help="Only this side.")] = None,
    all_symbols: Annotated[bool, typer.Option("--all", help="Every symbol: the whole "
                                                            "book.")] = False,
    by: ByOpt = "",
    audit: AuditOpt = DEFAULT_PATH,
    broker: BrokerOpt = DEFAULT_BROKER,
    fmt: FormatOpt = Format.text,
    access: AccessOpt = DEFAULT_ACCESS,
) -> None:
    """The kill function (the risk role): in one decision cancel the matching open orders and
    pending approvals, latch a halt for that scope (the book, or symbols, or one side), record
    who and why, and raise a critical alert. `fugger resume` ends it."""
    from engine.execution import kill as killing
    from engine.execution.state import ResumeRefused

    symbols = sorted(set(symbol or ()))
    if all_symbols == bool(symbols):
        fail("name the scope: --all, or one or more --symbol (not both)", EXIT_USAGE)
    if not reason.strip():
        fail("a kill needs a reason (--reason)", EXIT_USAGE)
    paper = _broker(broker)
    now = wall_now()
    sides = side.value if side else None
    with _store(audit) as store:
        actor = authorised(store, access, "kill", by=by,
                           target=killing.scope_text(symbols, sides))
        try:
            result = killing.kill(store, paper, symbols=symbols, side=sides, by=actor.name,
                                  reason=reason, now=now)
        except ResumeRefused as e:
            fail(f"kill refused: {e}", EXIT_USAGE)
    if fmt is Format.json:
        sys.stdout.write(json.dumps({
            "kill_id": result.kill_id, "scope": result.scope, "by": actor.name,
            "reason": reason,
            "cancelled_orders": list(result.cancelled_orders),
            "cancelled_approvals": list(result.cancelled_approvals),
            "filled_before_cancel": list(result.filled_orders),
            "trading_state": result.state.to_json()}) + "\n")
        return
    out.print(f"killed {result.scope} by {actor.name}: {reason}", markup=False)
    out.print(f"  cancelled {len(result.cancelled_orders)} open order(s), "
              f"{len(result.cancelled_approvals)} pending approval(s); trading "
              f"{result.state.state.value}; `fugger resume` ends it")
    if result.filled_orders:
        out.print(f"  {len(result.filled_orders)} open order(s) had filled before the "
                  "cancellation arrived: " + ", ".join(result.filled_orders), markup=False)
