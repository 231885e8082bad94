"""The report's HTML: sections, tables and the charts' fragments, with plotly.js inline once.

Every figure a reader may want to check sits in a table cell named by `data-figure`
("book.sharpe", "buy_hold.cagr", "costs.commission"...), so a test or a script can read it back.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
from plotly.offline import get_plotlyjs

from engine.actions import ACTION_NAMES
from engine.monitoring.report.data import RunData
from engine.monitoring.report.risk import FIGURES, Drawdown, RuleEffect
from engine.monitoring.report.thresholds import FACT_LABELS, Threshold
from engine.monitoring.summary.model import RunSummary
from engine.monitoring.summary.text import money, pct, rebalance_text, status_label
from engine.monitoring.summary.years import NOTABLE_YEARS

e = html.escape


@dataclass(frozen=True)
class Costs:
    fills: int
    traded: float
    turnover: float | None
    commission: float
    slippage: float


@dataclass(frozen=True)
class Sections:
    """What the page shows beyond the summary, computed by the report's other modules."""

    figures: Mapping[str, Mapping[str, float | None]]
    drawdowns: Sequence[Drawdown]
    costs: Costs
    effects: Sequence[RuleEffect]
    charts: Sequence[tuple[str, str]]
    symbol_charts: Sequence[tuple[str, str]]


_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1250px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; }
th { background: #f4f4f4; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.notable td { background: #fff4e0; font-weight: 600; }
.sev-critical { color: #a50f15; font-weight: 700; } .sev-warning { color: #b35806; }
.sev-info { color: #2166ac; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 14px; }
dt { font-weight: 600; } dd { margin: 0; }
pre { background: #f8f8f8; padding: 1em; overflow-x: auto; font-size: 0.8em; }
ul.assumptions li { margin: 0.2em 0; }
"""


def render(s: RunSummary, d: RunData, sec: Sections,
           thresholds: Mapping[str, Threshold]) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>FuggerBot run {e(s.run_id)}</title>",
        f"<style>{_CSS}</style>",
        # plotly.js, inline and once: the file must open without a network.
        f'<script type="text/javascript">{get_plotlyjs()}</script>',
        "</head><body>",
        f"<h1>FuggerBot run {e(s.run_id)}</h1>",
        _run_facts(s),
        "<h2>Performance and risk</h2>",
        _risk_table(sec.figures),
        sec.charts[0][1],
        "<h3>Five worst drawdowns of the book</h3>",
        _drawdowns(sec.drawdowns),
        *[chart for _, chart in sec.charts[1:3]],
        "<h2>Exposure, trading and costs</h2>",
        *[chart for _, chart in sec.charts[3:]],
        _costs(sec.costs),
        "<h2>What the rails did</h2>",
        _actions(s, thresholds),
        "<h3>Halts</h3>",
        _halts(d),
        "<h3>What each rule cost or saved</h3>",
        "<p>For each rule, the book's compounded return over the days after the days it "
        "decided against allow, beside what buy &amp; hold made over the same days. Positive "
        "&ldquo;saved&rdquo;: the book did better than buy &amp; hold on them.</p>",
        _effects(sec.effects),
        "<h3>Rules</h3>",
        _rules(s),
        f"<p>{e(rebalance_text(s))}</p>",
        f"<h2>Orders ({s.orders})</h2>",
        _orders(s),
        "<h3>Denied orders by rule</h3>",
        _denials(s),
        "<h2>By year</h2>",
        f"<p>Notable years ({', '.join(str(y) for y in NOTABLE_YEARS)}) are highlighted. "
        "Symbol-days per action; book days by the book's worst action.</p>",
        _years_table(s),
    ]
    for title, chart in sec.symbol_charts:
        parts += [f"<h2>{e(title)}</h2>", chart]
    parts += _alerts(s, d)
    parts += ["<h2>Assumptions</h2>", _assumptions(s, d)]
    parts += ["<h2>Summary as text</h2>", f'<pre class="summary">{e(s.render_text())}</pre>',
              "</body></html>"]
    return "\n".join(parts) + "\n"


def _run_facts(s: RunSummary) -> str:
    facts = [
        ("started", s.started_at or "-"),
        ("finished", s.finished_at or "not recorded"),
        ("days", f"{s.days} ({(s.first_day or '-')[:10]} .. {(s.last_day or '-')[:10]})"),
        ("symbols", ", ".join(s.symbols) or "-"),
        ("policies", ", ".join(f"{n} {v}" for n, v in s.policies) or "-"),
        ("policy hash", s.policy_hash or "-"),
        ("facts", s.facts_file or "-"),
        ("portfolio", s.portfolio_file or "-"),
        ("start equity", f"{money(s.book.start)} (book and buy & hold)"),
        ("end equity", f"book {money(s.book.end)}, buy & hold {money(s.buy_hold.end)}"),
    ]
    return "<dl>" + "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in facts) + "</dl>"


def _risk_table(figures: Mapping[str, Mapping[str, float | None]]) -> str:
    rows = []
    for key, label, fraction in FIGURES:
        cells = "".join(
            f'<td class="n" data-figure="{side}.{key}">{e(_fmt(figures[side][key], fraction))}'
            "</td>" for side in ("book", "buy_hold"))
        rows.append(f"<tr><td>{e(label)}</td>{cells}</tr>")
    return ('<table id="risk"><tr><th></th><th>book</th><th>buy &amp; hold</th></tr>'
            + "".join(rows) + "</table>")


def _fmt(value: float | None, fraction: bool) -> str:
    if value is None:
        return "-"
    return pct(value, signed=False) if fraction else f"{value:.2f}"


def _drawdowns(drawdowns: Sequence[Drawdown]) -> str:
    if not drawdowns:
        return "<p>The book never fell below a previous peak.</p>"
    rows = [[f"{d.depth:.2%}", _day(d.start), _day(d.trough),
             _day(d.recovery) if d.recovery is not None else "not recovered", str(d.days)]
            for d in drawdowns]
    return table(["depth", "peak (start)", "trough", "recovery", "length (trading days)"], rows,
                 table_id="drawdowns")


def _costs(c: Costs) -> str:
    rows = [("fills", "fills", str(c.fills)),
            ("traded", "value traded", money(c.traded)),
            ("turnover", "turnover a year (traded value / average equity)",
             "-" if c.turnover is None else f"{c.turnover:.2f}"),
            ("commission", "commission paid", money(c.commission)),
            ("slippage", "slippage paid (fill against planned price)", money(c.slippage)),
            ("total", "costs paid in all", money(c.commission + c.slippage))]
    body = "".join(f'<tr><td>{e(label)}</td><td class="n" data-figure="costs.{key}">{e(v)}</td>'
                   "</tr>" for key, label, v in rows)
    return f'<table id="costs">{body}</table>'


def _actions(s: RunSummary, thresholds: Mapping[str, Threshold]) -> str:
    book = dict(s.book_days_by_action)
    out = table(["action", "symbol-days", "book days (worst action)"],
                [[a, str(n), str(book.get(a, 0))] for a, n in s.symbol_days_by_action])
    out += ("<p>Trading state days: "
            + e(", ".join(f"{k} {v}" for k, v in s.days_by_trading_state)) + "</p>")
    limits = ", ".join(f"{FACT_LABELS.get(f, f)}: {t.text()}" for f, t in thresholds.items())
    return out + f"<p>Thresholds drawn: {e(limits)}.</p>"


def _halts(d: RunData) -> str:
    if not d.halts:
        return "<p>Trading was never halted.</p>"
    rows = [[h.start, h.rule or "-", h.end or "still halted", h.resumed_by or "-",
             "-" if h.days is None else str(h.days)] for h in d.halts]
    return table(["halted at", "rule", "resumed at", "resumed by", "days halted"], rows,
                 table_id="halts")


def _effects(effects: Sequence[RuleEffect]) -> str:
    if not effects:
        return "<p>No rule decided against allow.</p>"
    rows = [[f.rule, str(f.days), pct(f.book, True), pct(f.buy_hold, True), pct(f.saved, True)]
            for f in effects]
    return table(["rule", "days after", "book", "buy & hold", "saved (+) or cost (-)"], rows,
                 table_id="rule-effects")


def _rules(s: RunSummary) -> str:
    deciding = dict(s.rules_deciding)
    fired = dict(s.rules_fired)
    rows = [[r, str(n), str(deciding.get(r, 0))] for r, n in s.rules_fired]
    rows += [[r, "0", str(n)] for r, n in s.rules_deciding if r not in fired]
    return (table(["rule", "fired (symbol-days)", "deciding (symbol-days)"], rows)
            if rows else "<p>No rule fired.</p>")


def _orders(s: RunSummary) -> str:
    final = dict(s.orders_final_status)
    return table(["status", "orders that reached it", "orders whose last status it is"],
                 [[status_label(st), str(n), str(final.get(st, 0))]
                  for st, n in s.orders_by_status])


def _denials(s: RunSummary) -> str:
    """Which rule denied how many orders: the rails, the order policy's controls and the
    trading state alike, each by its own rule id."""
    return (table(["rule", "orders denied"], [[r, str(n)] for r, n in s.denials_by_rule],
                  table_id="denials") if s.denials_by_rule else "<p>No order was denied.</p>")


def _alerts(s: RunSummary, d: RunData) -> list[str]:
    critical = [a for a in d.alerts if a.severity == "critical"]
    rest = Counter((a.kind, a.severity) for a in d.alerts if a.severity != "critical")
    parts = [f"<h2>Alerts ({len(d.alerts)}; sink failures {s.sink_failures})</h2>",
             f"<h3>Critical ({len(critical)})</h3>"]
    if critical:
        parts.append(table(["time", "key", "title", "message"],
                           [[a.ts, a.key, a.title, a.message] for a in critical],
                           table_id="critical-alerts", numeric=False))
    else:
        parts.append("<p>No critical alert.</p>")
    parts.append("<h3>The others, by kind</h3>")
    if rest:
        parts.append(table(["kind", "severity", "alerts"],
                           [[k, sev, str(n)] for (k, sev), n in sorted(rest.items())],
                           table_id="alert-counts"))
    else:
        parts.append("<p>None.</p>")
    return parts


def _assumptions(s: RunSummary, d: RunData) -> str:
    slip = "not recorded" if d.slippage_bps is None else f"{d.slippage_bps:g} basis points"
    comm = ("not recorded" if d.commission_per_share is None
            else f"{d.commission_per_share:g} per share")
    items = [
        "Buy &amp; hold: the starting equity split equally across the symbols at the first "
        "day's prices, never rebalanced, no costs.",
        f"Fills on the paper broker: slippage {e(slip)} against the day's price; commission "
        f"{e(comm)}.",
        "Cash earns nothing; the risk-free rate in the Sharpe and Sortino ratios is zero.",
        "Figures use daily simple returns of the recorded equity and 252 trading days a year; "
        "VaR and CVaR are historical, of one day, at 95%; beta and alpha are against buy &amp; "
        "hold; computed with empyrical.",
        f"Approvals in the replay: {e(s.approval_rule or 'not recorded')}.",
        f"Resumes in the replay: {e(s.resume_rule or 'not recorded')}.",
        "A rule's cost or saving counts the day after each day it decided against allow: a "
        "decision at a close governs the next day.",
    ]
    return '<ul class="assumptions">' + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _years_table(s: RunSummary) -> str:
    head = ["year", "days", *[f"{a} (symbol-days)" for a in ACTION_NAMES],
            *[f"{a} (book days)" for a in ACTION_NAMES], "book return", "buy & hold return"]
    lines = ["<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>"]
    for y in s.years:
        sym, book = dict(y.symbol_days), dict(y.book_days)
        cells = [str(y.days), *[str(sym.get(a, 0)) for a in ACTION_NAMES],
                 *[str(book.get(a, 0)) for a in ACTION_NAMES], pct(y.book_return, True),
                 pct(y.buy_hold_return, True)]
        css = ' class="notable"' if y.year in NOTABLE_YEARS else ""
        lines.append(f"<tr{css}><td>{y.year}</td>"
                     + "".join(f'<td class="n">{e(c)}</td>' for c in cells) + "</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, table_id: str = "",
          numeric: bool = True) -> str:
    """The first column as text, the others right-aligned numbers unless `numeric` is off."""
    cls = ' class="n"' if numeric else ""
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + f"<td>{e(r[0])}</td>" + "".join(f"<td{cls}>{e(c)}</td>" for c in r[1:])
        + "</tr>" for r in rows)
    ident = f' id="{table_id}"' if table_id else ""
    return f"<table{ident}><tr>{head}</tr>{body}</table>"


def _day(t: pd.Timestamp) -> str:
    return t.strftime("%Y-%m-%d")
