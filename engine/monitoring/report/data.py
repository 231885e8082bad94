"""The series and events of one run, read from its audit records for the report."""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from engine.actions import ACTION_NAMES, Action, most_restrictive
from engine.audit.store import AuditStore
from engine.execution import state as trading
from engine.monitoring.report.thresholds import FACT_LABELS
from engine.monitoring.summary.model import RunSummary
from engine.monitoring.summary.records import AlertLine, alert_line, cycle_records
from engine.timeutil import TimestampError, parse_utc

#: What an order's status means on a chart: "fill" becomes "buy" or "sell".
_MARKED: Mapping[str, str] = {
    "filled": "fill",
    "denied": "denied",
    "rejected": "denied",
    "failed": "denied",
    "pending_approval": "held",
}


@dataclass(frozen=True)
class Mark:
    day: int
    symbol: str
    #: "buy", "sell", "denied" or "held"
    what: str
    price: float


@dataclass(frozen=True)
class Fill:
    day: int
    symbol: str
    side: str
    shares: float
    #: The price the order was planned at; the fill differs from it by the slippage.
    price: float
    fill_price: float
    commission: float

    @property
    def notional(self) -> float:
        return abs(self.shares) * self.fill_price

    @property
    def slippage(self) -> float:
        return abs(self.fill_price - self.price) * abs(self.shares)


@dataclass(frozen=True)
class Halt:
    start: str
    rule: str | None
    end: str | None
    resumed_by: str | None
    days: int | None


@dataclass(frozen=True)
class RunData:
    days: pd.DatetimeIndex
    equity: np.ndarray
    buy_hold: np.ndarray
    cash: np.ndarray
    symbols: tuple[str, ...]
    prices: Mapping[str, np.ndarray]
    #: Each symbol's value over the book's equity, per day.
    weights: Mapping[str, np.ndarray]
    facts: Mapping[str, Mapping[str, np.ndarray]]
    #: Index into ACTION_NAMES per day; -1 where the symbol had no action that day.
    actions: Mapping[str, np.ndarray]
    book_actions: np.ndarray
    #: Per day, the rules that decided an action other than allow for some symbol.
    deciding: tuple[frozenset[str], ...]
    marks: tuple[Mark, ...]
    fills: tuple[Fill, ...]
    halts: tuple[Halt, ...]
    alerts: tuple[AlertLine, ...]
    slippage_bps: float | None
    commission_per_share: float | None


def load(store: AuditStore, summary: RunSummary) -> RunData:
    records = cycle_records(store, summary.run_id)
    symbols: set[str] = set(summary.symbols)
    for _, r in records:
        symbols.update(str(s) for s in _dict(r.body.get("actions")))
    ordered = tuple(sorted(symbols))
    n = len(records)
    moments = [m for m, _ in records]
    prices = {s: np.full(n, np.nan) for s in ordered}
    shares = {s: np.zeros(n) for s in ordered}
    facts = {s: {f: np.full(n, np.nan) for f in FACT_LABELS} for s in ordered}
    actions = {s: np.full(n, -1, dtype=int) for s in ordered}
    book = np.full(n, -1, dtype=int)
    equity, buy_hold, cash = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    deciding: list[frozenset[str]] = []
    for i, (_, r) in enumerate(records):
        b = r.body
        equity[i] = number(b.get("equity"))
        buy_hold[i] = number(b.get("buy_hold_equity"))
        cash[i] = number(b.get("cash"))
        for s, p in _dict(b.get("prices")).items():
            if s in prices:
                prices[s][i] = number(p)
        for s, q in _dict(b.get("positions")).items():
            if s in shares:
                shares[s][i] = np.nan_to_num(number(q))
        for s, values in _dict(b.get("facts")).items():
            for f, v in _dict(values).items():
                if s in facts and f in facts[s]:
                    facts[s][f][i] = number(v)
        day_actions = []
        against: set[str] = set()
        rules = _dict(b.get("deciding"))
        for s, a in _dict(b.get("actions")).items():
            if a in ACTION_NAMES:
                actions[str(s)][i] = ACTION_NAMES.index(a)
                day_actions.append(Action(a))
                if a != Action.ALLOW.value and isinstance(rules.get(s), str):
                    against.add(rules[s])
        if day_actions:
            book[i] = ACTION_NAMES.index(most_restrictive(day_actions).value)
        deciding.append(frozenset(against))
    # The last known price carries a position's value over a day without one.
    filled = {s: pd.Series(p).ffill().to_numpy() for s, p in prices.items()}
    with np.errstate(divide="ignore", invalid="ignore"):
        weights = {s: np.where(equity > 0, shares[s] * np.nan_to_num(filled[s]) / equity, np.nan)
                   for s in ordered}
    head = next((r.body for r in store.find(summary.run_id) if r.kind == "run_started"), {})
    marks, fills = _orders(store, summary.run_id, moments)
    return RunData(
        days=pd.DatetimeIndex(moments),
        equity=equity, buy_hold=buy_hold, cash=cash, symbols=ordered, prices=prices,
        weights=weights, facts=facts, actions=actions, book_actions=book,
        deciding=tuple(deciding), marks=marks, fills=fills,
        halts=_halts(store, summary.run_id),
        alerts=tuple(alert_line(r) for r in store.iter_records("alert")
                     if isinstance(r.body, dict) and r.body.get("run_id") == summary.run_id),
        slippage_bps=_opt(head.get("slippage_bps")),
        commission_per_share=_opt(head.get("commission_per_share")),
    )


def _orders(store: AuditStore, run_id: str, moments: Sequence[datetime],
            ) -> tuple[tuple[Mark, ...], tuple[Fill, ...]]:
    """One mark per order, on the day it happened (its fill, or else the first time it was
    denied, rejected, failed or held for approval), and every fill with its costs."""
    by_order: dict[str, Mark] = {}
    fills: list[Fill] = []
    for r in store.iter_records("order"):
        b = r.body
        if not isinstance(b, dict) or b.get("run_id") != run_id:
            continue
        what = _MARKED.get(str(b.get("status")))
        if what is None:
            continue
        try:
            day = bisect.bisect_right(moments, parse_utc(b.get("ts"))) - 1
        except TimestampError:
            continue
        if day < 0:
            continue
        side = str(b.get("side", "")).lower()
        symbol = str(b.get("symbol", ""))
        planned = number(b.get("price"))
        if what == "fill":
            fill_price = number(b.get("fill_price"))
            if math.isfinite(fill_price):
                fills.append(Fill(day, symbol, side, np.nan_to_num(number(b.get("shares"))),
                                  planned if math.isfinite(planned) else fill_price,
                                  fill_price, np.nan_to_num(number(b.get("commission")))))
            what = "sell" if side == "sell" else "buy"
            price = fill_price if math.isfinite(fill_price) else planned
        else:
            price = planned
        client_id = str(b.get("client_id") or r.ref)
        previous = by_order.get(client_id)
        if previous is not None and (previous.what != "held" or what not in ("buy", "sell")):
            continue
        by_order[client_id] = Mark(day, symbol, what, price)
    return tuple(by_order[k] for k in sorted(by_order)), tuple(fills)


def _halts(store: AuditStore, run_id: str) -> tuple[Halt, ...]:
    """Every latched halt of the run: when, which rule, who resumed it and after how long."""
    halts: list[Halt] = []
    open_halt: tuple[str, str | None] | None = None
    for r in store.iter_records(trading.KIND):
        b = r.body
        if not isinstance(b, dict) or b.get("run_id") != run_id:
            continue
        state, since = b.get("state"), str(b.get("since") or "")
        if state == trading.TradingState.HALTED.value and open_halt is None:
            open_halt = (since, _opt_str(b.get("rule")))
        elif state != trading.TradingState.HALTED.value and open_halt is not None:
            halts.append(Halt(open_halt[0], open_halt[1], since, _opt_str(b.get("by")),
                              _days_between(open_halt[0], since)))
            open_halt = None
    if open_halt is not None:
        halts.append(Halt(open_halt[0], open_halt[1], None, None, None))
    return tuple(halts)


def _days_between(start: str, end: str) -> int | None:
    try:
        return (parse_utc(end) - parse_utc(start)).days
    except TimestampError:
        return None


def _dict(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _opt(value: object) -> float | None:
    v = number(value)
    return v if math.isfinite(v) else None


def number(value: object) -> float:
    """A finite number, or NaN (drawn as a gap) for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return math.nan
    return float(value)
