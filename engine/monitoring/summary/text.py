"""A run summary as plain text: a few lines and fixed-width tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from engine.ids import short
from engine.monitoring.summary.years import NOTABLE_YEARS

if TYPE_CHECKING:
    # The summary renders itself with this module, which needs its type only to be checked.
    from engine.monitoring.summary.model import RunSummary

_SHORT = {"wait_confirmation": "wait"}


def render_lines(s: RunSummary) -> list[str]:
    """The lines of the plain-text report of `s`."""
    lines = [f"Run {short(s.run_id)}"]
    lines.append(f"  started {s.started_at or '-'}, finished {s.finished_at or 'not recorded'}")
    lines.append(f"  facts {s.facts_file or '-'}, portfolio {s.portfolio_file or '-'}")
    policies = ", ".join(f"{n} {v}" for n, v in s.policies) or "-"
    lines.append(f"  policies {policies} (hash {short(s.policy_hash or '-')})")
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
    if s.denials_by_rule:
        lines += ["", "Denied orders by rule"]
        lines += _table(["rule", "orders"], [[r, str(n)] for r, n in s.denials_by_rule])

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
