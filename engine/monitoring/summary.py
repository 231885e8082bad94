"""What a run did, computed from its audit records alone.

The records read are those the run writes: `run_started`, one `cycle` per day, `order` records
(one per status an order reaches), `run_finished`, and the `alert` and `alert_sink_failure`
records of the alert engine. Nothing else is consulted, so a summary can be rebuilt from an
audit store long after the run, and two summaries of the same store are identical.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from engine.actions import ACTION_NAMES, Action, most_restrictive
from engine.audit.store import AuditStore, Record
from engine.timeutil import TimestampError, parse_utc

#: Years whose market stress every summary points at (dot-com bust, financial crisis, the
#: euro-area debt crisis); every other year is summarised the same way.
NOTABLE_YEARS: tuple[int, ...] = (2001, 2008, 2011)
ORDER_STATUSES: tuple[str, ...] = (
    "sent",
    "filled",
    "denied",
    "pending_approval",
    "approved",
    "rejected",
    "expired",
    "cancelled",
    "failed",
)
#: Statuses that mean the order was handed to the broker: each counts as "sent".
_AT_BROKER = frozenset({"submitting", "sent", "filled"})
SEVERITIES: tuple[str, ...] = ("critical", "warning", "info")
TRADING_STATES: tuple[str, ...] = ("ACTIVE", "REDUCING", "HALTED")
TRADING_DAYS_PER_YEAR = 252
LAST_ALERTS = 20

Counts = tuple[tuple[str, int], ...]


class SummaryError(ValueError):
    """The audit store holds no such run, or a record of it cannot be read."""


@dataclass(frozen=True)
class Performance:
    """Figures of one equity curve; None where they are undefined (too few days, zero equity)."""

    start: float | None
    end: float | None
    total_return: float | None
    annualised_volatility: float | None
    max_drawdown: float | None

    def to_json(self) -> dict[str, float | None]:
        return {
            "start": self.start,
            "end": self.end,
            "total_return": self.total_return,
            "annualised_volatility": self.annualised_volatility,
            "max_drawdown": self.max_drawdown,
        }


@dataclass(frozen=True)
class YearSummary:
    year: int
    days: int
    #: Symbol-days under each action.
    symbol_days: Counts
    #: Days on which the book's most restrictive action was each action.
    book_days: Counts
    book_return: float | None
    buy_hold_return: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "year": self.year,
            "notable": self.year in NOTABLE_YEARS,
            "days": self.days,
            "symbol_days": dict(self.symbol_days),
            "book_days": dict(self.book_days),
            "book_return": self.book_return,
            "buy_hold_return": self.buy_hold_return,
        }


@dataclass(frozen=True)
class AlertLine:
    alert_id: str
    ts: str
    severity: str
    kind: str
    key: str
    title: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {
            "alert_id": self.alert_id,
            "ts": self.ts,
            "severity": self.severity,
            "kind": self.kind,
            "key": self.key,
            "title": self.title,
            "message": self.message,
        }


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    started_at: str | None
    finished_at: str | None
    facts_file: str | None
    portfolio_file: str | None
    policies: tuple[tuple[str, str], ...]
    policy_hash: str | None
    symbols: tuple[str, ...]
    initial_cash: float | None
    approval_rule: str | None
    resume_rule: str | None
    days: int
    first_day: str | None
    last_day: str | None
    symbol_days_by_action: Counts
    book_days_by_action: Counts
    days_by_trading_state: Counts
    rules_fired: Counts
    rules_deciding: Counts
    #: Days a rebalance was triggered, by the rule that triggered it.
    rebalances: int
    rebalances_by_rule: Counts
    #: Days a triggered rebalance was carried out.
    rebalances_executed: int
    orders: int
    #: Distinct orders that reached each status at some point ("sent": handed to the broker,
    #: which a filled order was).
    orders_by_status: Counts
    #: Distinct orders by the last status recorded for them.
    orders_final_status: Counts
    book: Performance
    buy_hold: Performance
    years: tuple[YearSummary, ...]
    alerts: int
    alerts_by_severity: Counts
    last_alerts: tuple[AlertLine, ...]
    sink_failures: int

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "facts_file": self.facts_file,
            "portfolio_file": self.portfolio_file,
            "policies": dict(self.policies),
            "policy_hash": self.policy_hash,
            "symbols": list(self.symbols),
            "initial_cash": self.initial_cash,
            "approval_rule": self.approval_rule,
            "resume_rule": self.resume_rule,
            "days": self.days,
            "first_day": self.first_day,
            "last_day": self.last_day,
            "symbol_days_by_action": dict(self.symbol_days_by_action),
            "book_days_by_action": dict(self.book_days_by_action),
            "days_by_trading_state": dict(self.days_by_trading_state),
            "rules_fired": dict(self.rules_fired),
            "rules_deciding": dict(self.rules_deciding),
            "rebalances": {
                "count": self.rebalances,
                "by_rule": dict(self.rebalances_by_rule),
                "executed": self.rebalances_executed,
            },
            "orders": {
                "count": self.orders,
                "by_status": dict(self.orders_by_status),
                "final_status": dict(self.orders_final_status),
            },
            "book": self.book.to_json(),
            "buy_hold": self.buy_hold.to_json(),
            "years": [y.to_json() for y in self.years],
            "notable_years": [y.to_json() for y in self.years if y.year in NOTABLE_YEARS],
            "alerts": {
                "count": self.alerts,
                "by_severity": dict(self.alerts_by_severity),
                "last": [a.to_json() for a in self.last_alerts],
                "sink_failures": self.sink_failures,
            },
        }

    def render_text(self) -> str:
        """A plain-text report: a few lines and fixed-width tables, the same on every call."""
        return "\n".join(_render(self)) + "\n"


# -- reading the store ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Cycle:
    seq: int
    ref: str
    moment: datetime
    ts: str
    equity: float
    buy_hold: float
    actions: tuple[tuple[str, Action], ...]
    fired: tuple[str, ...]
    deciding: tuple[str, ...]
    trading_state: str
    rebalance_rule: str | None
    rebalanced: bool
    rebalance_executed: bool


def latest_run_id(store: AuditStore) -> str | None:
    """The id of the run started last, or None when the store holds no run."""
    record = store.latest("run_started")
    return None if record is None else record.ref


def run_ids(store: AuditStore) -> list[str]:
    """Every run in the store, oldest first."""
    return [r.ref for r in store.iter_records("run_started")]


def summarize(store: AuditStore, run_id: str | None = None) -> RunSummary:
    """The summary of run `run_id` (the latest run when None), from the audit records alone."""
    started = _run_started(store, run_id)
    run_id = started.ref
    head = started.body
    cycles = _cycles(store, run_id)
    finished = next((r for r in store.find(run_id) if r.kind == "run_finished"), None)

    symbol_days: Counter[str] = Counter()
    book_days: Counter[str] = Counter()
    states: Counter[str] = Counter()
    fired: Counter[str] = Counter()
    deciding: Counter[str] = Counter()
    rebalances: Counter[str] = Counter()
    executed = 0
    for c in cycles:
        symbol_days.update(a.value for _, a in c.actions)
        book_days[most_restrictive(a for _, a in c.actions).value] += 1
        states[c.trading_state] += 1
        fired.update(c.fired)
        deciding.update(c.deciding)
        if c.rebalanced:
            rebalances[c.rebalance_rule or "(no rule named)"] += 1
            executed += int(c.rebalance_executed)

    reached, final = _orders(store, run_id)
    alerts, by_severity, last = _alerts(store, run_id)
    failures = sum(
        1 for r in store.iter_records("alert_sink_failure") if r.body.get("run_id") == run_id
    )

    policies = head.get("policies")
    return RunSummary(
        run_id=run_id,
        started_at=_opt_str(head.get("started_at")),
        finished_at=_opt_str(finished.body.get("finished_at")) if finished else None,
        facts_file=_opt_str(head.get("facts_file")),
        portfolio_file=_opt_str(head.get("portfolio_file")),
        policies=tuple(sorted((str(k), str(v)) for k, v in policies.items()))
        if isinstance(policies, Mapping)
        else (),
        policy_hash=_opt_str(head.get("policy_hash")),
        symbols=tuple(sorted(str(s) for s in head.get("symbols") or ())),
        initial_cash=_opt_number(head.get("initial_cash")),
        approval_rule=_opt_str(head.get("approval_rule")),
        resume_rule=_opt_str(head.get("resume_rule")),
        days=len(cycles),
        first_day=cycles[0].ts if cycles else None,
        last_day=cycles[-1].ts if cycles else None,
        symbol_days_by_action=_in_order(symbol_days, ACTION_NAMES),
        book_days_by_action=_in_order(book_days, ACTION_NAMES),
        days_by_trading_state=_in_order(states, TRADING_STATES),
        rules_fired=_by_count(fired),
        rules_deciding=_by_count(deciding),
        rebalances=sum(rebalances.values()),
        rebalances_by_rule=_by_count(rebalances),
        rebalances_executed=executed,
        orders=len(final),
        orders_by_status=_in_order(Counter({s: len(ids) for s, ids in reached.items()}),
                                   ORDER_STATUSES),
        orders_final_status=_in_order(Counter(final.values()), ORDER_STATUSES),
        book=performance([c.equity for c in cycles]),
        buy_hold=performance([c.buy_hold for c in cycles]),
        years=_years(cycles),
        alerts=alerts,
        alerts_by_severity=_in_order(by_severity, SEVERITIES),
        last_alerts=last,
        sink_failures=failures,
    )


def performance(equity: Sequence[float]) -> Performance:
    """Start, end, total return, annualised volatility of daily returns (sample standard
    deviation times sqrt(252)) and maximum drawdown (a fraction >= 0) of an equity curve."""
    if not equity:
        return Performance(None, None, None, None, None)
    values = np.asarray(equity, dtype=float)
    start, end = float(values[0]), float(values[-1])
    total = end / start - 1.0 if start > 0 else None
    previous = values[:-1]
    usable = previous > 0
    returns = values[1:][usable] / previous[usable] - 1.0
    vol = (
        float(np.std(returns, ddof=1)) * math.sqrt(TRADING_DAYS_PER_YEAR)
        if returns.size >= 2
        else None
    )
    peaks = np.maximum.accumulate(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        drawdowns = np.where(peaks > 0, 1.0 - values / peaks, 0.0)
    return Performance(start, end, total, vol, float(drawdowns.max()))


def _run_started(store: AuditStore, run_id: str | None) -> Record:
    if run_id is None:
        record = store.latest("run_started")
        if record is None:
            raise SummaryError(f"{store.path}: no run recorded (no run_started record)")
    else:
        record = next((r for r in store.find(run_id) if r.kind == "run_started"), None)
        if record is None:
            known = run_ids(store)
            hint = f"; runs recorded: {', '.join(known[-5:])}" if known else "; no run recorded"
            raise SummaryError(f"{store.path}: no run {run_id!r}{hint}")
    if not isinstance(record.body, dict):
        raise SummaryError(f"{store.path}: record {record.seq} (run_started) is not an object")
    return record


def cycle_records(store: AuditStore, run_id: str) -> list[tuple[datetime, Record]]:
    """The `cycle` records of run `run_id`, one per day, in day order, with their day.

    A resumed run may record a day again; the later record is the one that stands.
    """
    by_day: dict[datetime, Record] = {}
    for record in store.iter_records("cycle"):
        body = record.body
        if not isinstance(body, dict) or body.get("run_id") != run_id:
            continue
        ts = body.get("ts")
        try:
            moment = parse_utc(ts)
        except TimestampError as exc:
            raise SummaryError(f"{_where(store, record)}: ts: {exc}") from None
        by_day[moment] = record
    return [(m, by_day[m]) for m in sorted(by_day)]


def _where(store: AuditStore, r: Record) -> str:
    return f"{store.path}: record {r.seq} ({r.kind} {r.ref})"


def _cycles(store: AuditStore, run_id: str) -> list[_Cycle]:
    return [_cycle(store, moment, r) for moment, r in cycle_records(store, run_id)]


def _cycle(store: AuditStore, moment: datetime, r: Record) -> _Cycle:
    b = r.body
    where = _where(store, r)
    ts = b.get("ts")
    actions = b.get("actions")
    if not isinstance(actions, Mapping) or not actions:
        raise SummaryError(f"{where}: actions must be a non-empty object, got {actions!r}")
    parsed: list[tuple[str, Action]] = []
    for symbol, action in sorted(actions.items()):
        if not isinstance(action, str) or action not in ACTION_NAMES:
            raise SummaryError(
                f"{where}: actions.{symbol} is {action!r}, not a safety action "
                f"({', '.join(ACTION_NAMES)})"
            )
        parsed.append((str(symbol), Action(action)))
    fired: list[str] = []
    for symbol, rules in sorted(_mapping(b.get("fired"), f"{where}: fired").items()):
        if not isinstance(rules, list) or not all(isinstance(x, str) for x in rules):
            raise SummaryError(f"{where}: fired.{symbol} must be a list of rule ids")
        fired.extend(rules)
    deciding = [
        str(rule)
        for _, rule in sorted(_mapping(b.get("deciding"), f"{where}: deciding").items())
        if rule is not None
    ]
    rebalance = _mapping(b.get("rebalance"), f"{where}: rebalance")
    state = b.get("trading_state")
    return _Cycle(
        seq=r.seq,
        ref=r.ref,
        moment=moment,
        ts=str(ts),
        equity=_amount(b.get("equity"), f"{where}: equity"),
        buy_hold=_amount(b.get("buy_hold_equity"), f"{where}: buy_hold_equity"),
        actions=tuple(parsed),
        fired=tuple(fired),
        deciding=tuple(deciding),
        trading_state=state if isinstance(state, str) else "(not recorded)",
        rebalance_rule=_opt_str(rebalance.get("rule")),
        rebalanced=rebalance.get("triggered") is True,
        # A record that does not say whether it was carried out is taken at its trigger.
        rebalance_executed=rebalance.get("executed", rebalance.get("triggered")) is True,
    )


def _orders(store: AuditStore, run_id: str) -> tuple[dict[str, set[str]], dict[str, str]]:
    reached: dict[str, set[str]] = {}
    final: dict[str, str] = {}
    for r in store.iter_records("order"):
        b = r.body
        if not isinstance(b, dict) or b.get("run_id") != run_id:
            continue
        status = b.get("status")
        if not isinstance(status, str) or not status:
            raise SummaryError(f"{store.path}: record {r.seq} (order {r.ref}): status is "
                               f"{status!r}")
        client_id = str(b.get("client_id") or r.ref)
        reached.setdefault(status, set()).add(client_id)
        if status in _AT_BROKER:
            reached.setdefault("sent", set()).add(client_id)
        final[client_id] = status
    return reached, final


def _alerts(store: AuditStore, run_id: str) -> tuple[int, Counter[str], tuple[AlertLine, ...]]:
    count = 0
    by_severity: Counter[str] = Counter()
    last: deque[AlertLine] = deque(maxlen=LAST_ALERTS)
    for r in store.iter_records("alert"):
        b = r.body
        if not isinstance(b, dict) or b.get("run_id") != run_id:
            continue
        count += 1
        line = alert_line(r)
        by_severity[line.severity] += 1
        last.append(line)
    return count, by_severity, tuple(last)


def alert_line(r: Record) -> AlertLine:
    """The fields of an `alert` record a person reads."""
    b = r.body if isinstance(r.body, dict) else {}
    return AlertLine(
        alert_id=str(b.get("alert_id") or r.ref),
        ts=str(b.get("ts", "")),
        severity=str(b.get("severity", "")),
        kind=str(b.get("kind", "")),
        key=str(b.get("key", "")),
        title=str(b.get("title", "")),
        message=str(b.get("message", "")),
    )


def _years(cycles: Sequence[_Cycle]) -> tuple[YearSummary, ...]:
    years: list[YearSummary] = []
    previous_end: tuple[float, float] | None = (
        (cycles[0].equity, cycles[0].buy_hold) if cycles else None
    )
    for year, group in itertools.groupby(cycles, key=lambda c: c.moment.year):
        days = list(group)
        symbol_days = Counter(a.value for c in days for _, a in c.actions)
        book_days = Counter(most_restrictive(a for _, a in c.actions).value for c in days)
        end = (days[-1].equity, days[-1].buy_hold)
        base = previous_end if previous_end is not None else end
        years.append(
            YearSummary(
                year=year,
                days=len(days),
                symbol_days=_in_order(symbol_days, ACTION_NAMES),
                book_days=_in_order(book_days, ACTION_NAMES),
                book_return=_ratio(end[0], base[0]),
                buy_hold_return=_ratio(end[1], base[1]),
            )
        )
        previous_end = end
    return tuple(years)


# -- small helpers --------------------------------------------------------------------------


def _ratio(end: float, start: float) -> float | None:
    return end / start - 1.0 if start > 0 else None


def _in_order(counts: Counter[str], names: Iterable[str]) -> Counts:
    """Every name in `names` (zero when absent), then any other name seen, sorted."""
    known = list(names)
    extra = sorted(k for k in counts if k not in known)
    return tuple((k, int(counts.get(k, 0))) for k in [*known, *extra])


def _by_count(counts: Counter[str]) -> Counts:
    return tuple(sorted(((k, int(v)) for k, v in counts.items()), key=lambda kv: (-kv[1], kv[0])))


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SummaryError(f"{where} must be an object, got {value!r}")
    return value


def _amount(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SummaryError(f"{where} must be a finite number, got {value!r}")
    if value < 0:
        raise SummaryError(f"{where} must not be negative, got {value!r}")
    return float(value)


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _opt_number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


# -- text -----------------------------------------------------------------------------------

_SHORT = {"wait_confirmation": "wait"}


def _render(s: RunSummary) -> list[str]:
    lines = [f"Run {s.run_id}"]
    lines.append(f"  started {s.started_at or '-'}, finished {s.finished_at or 'not recorded'}")
    lines.append(f"  facts {s.facts_file or '-'}, portfolio {s.portfolio_file or '-'}")
    policies = ", ".join(f"{n} {v}" for n, v in s.policies) or "-"
    lines.append(f"  policies {policies} (hash {(s.policy_hash or '-')[:16]})")
    lines.append(f"  symbols {', '.join(s.symbols) or '-'}; initial cash {money(s.initial_cash)}")
    lines.append(f"  days {s.days} ({_day(s.first_day)} .. {_day(s.last_day)})")
    lines.append(f"  approval rule: {s.approval_rule or 'not recorded'}")
    lines.append(f"  resume rule: {s.resume_rule or 'not recorded'}")

    lines += ["", "Performance"]
    lines += _table(
        ["", "book", "buy & hold"],
        [
            ["start equity", money(s.book.start), money(s.buy_hold.start)],
            ["end equity", money(s.book.end), money(s.buy_hold.end)],
            ["total return", pct(s.book.total_return, True), pct(s.buy_hold.total_return, True)],
            ["annualised volatility", pct(s.book.annualised_volatility),
             pct(s.buy_hold.annualised_volatility)],
            ["max drawdown", pct(s.book.max_drawdown), pct(s.buy_hold.max_drawdown)],
        ],
    )

    lines += ["", "Safety actions"]
    book = dict(s.book_days_by_action)
    lines += _table(
        ["action", "symbol-days", "book days (worst action)"],
        [[a, str(n), str(book.get(a, 0))] for a, n in s.symbol_days_by_action],
    )
    states = ", ".join(f"{k} {v}" for k, v in s.days_by_trading_state)
    lines.append(f"  trading state days: {states}")

    lines += ["", "Rules (symbol-days)"]
    deciding = dict(s.rules_deciding)
    rule_rows = [[r, str(n), str(deciding.get(r, 0))] for r, n in s.rules_fired]
    rule_rows += [[r, "0", str(n)] for r, n in s.rules_deciding if r not in dict(s.rules_fired)]
    lines += _table(["rule", "fired", "deciding"], rule_rows) if rule_rows else ["  none fired"]

    lines += ["", rebalance_text(s)]

    lines += ["", f"Orders: {s.orders}"]
    final = dict(s.orders_final_status)
    lines += _table(
        ["status", "reached", "final"],
        [[status_label(st), str(n), str(final.get(st, 0))] for st, n in s.orders_by_status],
    )

    lines += ["", "By year (symbol-days per action; book return against buy & hold)"]
    actions = [a for a, _ in s.symbol_days_by_action]
    rows = []
    for y in s.years:
        counts = dict(y.symbol_days)
        rows.append(
            [f"{y.year}{'*' if y.year in NOTABLE_YEARS else ''}", str(y.days)]
            + [str(counts.get(a, 0)) for a in actions]
            + [pct(y.book_return, True), pct(y.buy_hold_return, True)]
        )
    headers = ["year", "days", *[_SHORT.get(a, a) for a in actions], "book", "buy & hold"]
    lines += _table(headers, rows) if rows else ["  no days recorded"]
    lines.append(f"  * notable years: {', '.join(str(y) for y in NOTABLE_YEARS)}")

    lines += ["", "Book days by worst action, by year"]
    rows = []
    for y in s.years:
        counts = dict(y.book_days)
        rows.append([f"{y.year}{'*' if y.year in NOTABLE_YEARS else ''}", str(y.days)]
                    + [str(counts.get(a, 0)) for a in actions])
    lines += _table(headers[: 2 + len(actions)], rows) if rows else ["  no days recorded"]

    severities = ", ".join(f"{k} {v}" for k, v in s.alerts_by_severity)
    lines += ["", f"Alerts: {s.alerts} ({severities}); sink failures: {s.sink_failures}"]
    if s.last_alerts:
        lines.append(f"Last {len(s.last_alerts)} alerts")
        lines += _table(
            ["ts", "severity", "key", "title"],
            [[a.ts, a.severity, a.key, a.title] for a in s.last_alerts],
            left=4,
        )
    return lines


def rebalance_text(s: RunSummary) -> str:
    by_rule = ", ".join(f"{r} {n}" for r, n in s.rebalances_by_rule)
    return (f"Rebalances: {s.rebalances} triggered" + (f" ({by_rule})" if by_rule else "")
            + f", {s.rebalances_executed} carried out")


def _table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, left: int = 1
) -> list[str]:
    """Fixed-width columns: the first `left` left-aligned (text), the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.ljust(widths[i]) if i < left else cell.rjust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return ("  " + "  ".join(parts)).rstrip()

    return [line(headers), *(line(r) for r in rows)]


def status_label(status: str) -> str:
    return "held (pending_approval)" if status == "pending_approval" else status


def money(value: float | None) -> str:
    """An amount with thousands separators and cents; "-" when undefined."""
    return "-" if value is None else f"{value:,.2f}"


def pct(value: float | None, signed: bool = False) -> str:
    """A fraction as a percentage with two decimals; "-" when undefined."""
    if value is None:
        return "-"
    return f"{value:+.2%}" if signed else f"{value:.2%}"


def _day(ts: str | None) -> str:
    return ts[:10] if ts else "-"
