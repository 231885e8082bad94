"""fugger rotate: targets, drift, the rebalance trigger and the gated plan for one book."""

from __future__ import annotations

import json
import math
import sys
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
)
from engine.factsource import DEFAULT_MAX_SNAPSHOT_BYTES

if TYPE_CHECKING:
    from engine.portfolio.book import Book
    from engine.portfolio.gating import GatedPlan
    from engine.portfolio.planner import PlanLine


def rotate(
    policies: PoliciesOpt = "policies",
    facts: Annotated[str, typer.Option("--facts", "-f", metavar="FILE",
                                       help="The latest snapshot of every symbol.")] = "-",
    portfolio: Annotated[str, typer.Option(metavar="FILE", help="The book: cash, positions "
                                                                "(shares), as_of.")] =
    "examples/portfolio.yaml",
    fmt: FormatOpt = Format.text,
    clock: ClockOpt = ClockName.wall,
    max_snapshot_bytes: MaxSnapshotOpt = DEFAULT_MAX_SNAPSHOT_BYTES,
) -> None:
    """Show the target weights, the current weights (cash included), each line's drift, the
    rotation rule that triggered (or why none did), the safety verdict per symbol, and the
    plan: the orders to send and those the rails hold back, with the rule that holds them.
    Nothing is sent or recorded."""
    # Imported here: rotation needs pandas, which other commands should not pay for.
    from engine.decision import governing
    from engine.evaluator import SafetyEvaluator
    from engine.portfolio.gating import gate_plan
    from engine.rotation import RotationEvaluator

    ps = load_policies([policies])
    book = load_book_file(portfolio)
    snaps = load_snapshots(facts, max_snapshot_bytes=max_snapshot_bytes)
    try:
        safety = SafetyEvaluator(ps)
        rotation = RotationEvaluator(ps)
    except ValueError as e:
        fail(str(e))
    now_ts = max(str(s.get("ts", "")) for s in snaps if isinstance(s, dict))
    on = clock_of(clock)
    decisions = {sym: d for sym, d in governing(safety.decide(s, clock=on) for s in snaps).items()
                 if d.symbol is not None}
    try:
        rot = rotation.rotate(book, snaps, now_ts)
    except ValueError as e:
        fail(str(e))
    verdicts = {sym: d.verdict for sym, d in decisions.items()}
    prices = {k: v for k, v in rot.prices.items() if v is not None}
    lines = rot.plan.lines if rot.plan else ()
    gated = gate_plan(lines, book, verdicts, prices=prices)
    doc = _document(book, rot, gated, decisions, prices)
    if fmt is Format.json:
        sys.stdout.write(json.dumps(doc, sort_keys=True) + "\n")
        return
    _render(doc)


def _line(line: PlanLine) -> dict[str, Any]:
    return {"symbol": line.symbol, "side": line.side, "shares": line.shares,
            "price": line.price, "notional": round(line.notional, 2), "reason": line.reason}


def _document(book: Book, rot: Any, gated: GatedPlan, decisions: dict[str, Any],
              prices: dict[str, float]) -> dict[str, Any]:
    cash = book.cash
    shares = dict(book.positions)
    for line in gated.plan:
        if line.side == "BUY":
            cash -= line.notional
            shares[line.symbol] = shares.get(line.symbol, 0) + line.shares
        else:
            cash += line.notional
            shares[line.symbol] = shares.get(line.symbol, 0) - line.shares
    from engine.portfolio.book import CASH

    values = {s: n * prices[s] for s, n in shares.items() if n > 0 and s in prices}
    equity = cash + math.fsum(values.values())
    post = {s: round(v / equity, 6) for s, v in sorted(values.items())} if equity > 0 else {}
    if equity > 0:
        post[CASH] = round(cash / equity, 6)
    return {
        "ts": max((d.ts or "") for d in decisions.values()) if decisions else None,
        "targets": {s: round(w, 6) for s, w in rot.targets.targets.items()},
        "hold": rot.targets.hold,
        "excluded": dict(rot.targets.excluded),
        "ineligible": dict(rot.targets.ineligible),
        "weights": {s: round(w, 6) for s, w in rot.weights.items()},
        "weight_drift": {s: round(w, 6) for s, w in rot.weight_drift.items()},
        "relative_drift": {s: round(w, 6) for s, w in rot.relative_drift.items()},
        "rebalance": {"triggered": rot.trigger.triggered, "rule": rot.trigger.rule,
                      "source": rot.trigger.source, "fired": list(rot.trigger.fired),
                      "reason": rot.trigger.reason,
                      "facts": {k: v for k, v in rot.trigger.facts.items()}},
        "safety": {s: {"action": d.action.value,
                       "rule": d.rule}
                   for s, d in sorted(decisions.items())},
        "plan": [_line(x) for x in gated.plan],
        "held": [{**_line(h.line), "rule": h.rule, "action": h.action.value}
                 for h in gated.held],
        "unexited": dict(gated.unexited),
        "skipped": dict(rot.plan.skipped) if rot.plan else {},
        "post_trade": {"cash": round(cash, 2), "weights": post},
    }


def _render(doc: dict[str, Any]) -> None:
    t = Table("symbol", "safety", "target", "weight", "drift", title=f"book at {doc['ts']}",
              title_justify="left")
    symbols = sorted(set(doc["targets"]) | set(doc["weights"]) | set(doc["safety"]))
    for s in symbols:
        safety = doc["safety"].get(s)
        verdict = (f"{safety['action']}" + (f" ({safety['rule']})" if safety["rule"] else "")
                   if safety else "-")
        t.add_row(s, verdict, _pct(doc["targets"].get(s)), _pct(doc["weights"].get(s)),
                  _pct(doc["weight_drift"].get(s)))
    out.print(t)
    for s, why in {**doc["excluded"], **doc["ineligible"]}.items():
        out.print(f"  {s}: {why}")
    r = doc["rebalance"]
    out.print(f"rebalance: {'TRIGGERED by ' + r['rule'] if r['triggered'] else 'not triggered'}"
              + (f" ({r['source']})" if r["triggered"] and r["source"] else "")
              + f": {r['reason']}")
    if doc["plan"]:
        p = Table("symbol", "side", "shares", "price", "notional", "reason", title="plan",
                  title_justify="left")
        for x in doc["plan"]:
            p.add_row(x["symbol"], x["side"], str(x["shares"]), f"{x['price']:g}",
                      f"{x['notional']:,.2f}", x["reason"])
        out.print(p)
    if doc["held"]:
        h = Table("symbol", "side", "shares", "held by", title="held back by the rails",
                  title_justify="left")
        for x in doc["held"]:
            h.add_row(x["symbol"], x["side"], str(x["shares"]), f"{x['rule']} ({x['action']})")
        out.print(h)
    if not doc["plan"] and not doc["held"]:
        out.print("no order")
    post = doc["post_trade"]
    out.print(f"after the plan: cash {post['cash']:,.2f}; weights "
              + ", ".join(f"{s} {_pct(w)}" for s, w in post["weights"].items()))


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.2f}%"
