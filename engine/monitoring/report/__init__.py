"""One self-contained HTML report of a run, rebuilt from its audit records alone.

`data` reads the run's series and events, `risk` computes the figures (with empyrical),
`charts` draws them with plotly and `page` lays out the HTML, with plotly.js inline once so
the report is a single file that opens offline, can be mailed and archived.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from engine.audit.store import AuditStore
from engine.monitoring.report import charts, risk
from engine.monitoring.report.data import RunData, load
from engine.monitoring.report.page import Costs, Sections, render
from engine.monitoring.report.thresholds import (
    DEFAULT_THRESHOLDS,
    FACT_LABELS,
    Threshold,
    recorded_thresholds,
)
from engine.monitoring.summary.build import summarize
from engine.monitoring.summary.model import RunSummary
from engine.monitoring.summary.records import SummaryError

__all__ = ["DEFAULT_THRESHOLDS", "FACT_LABELS", "REPORT_NAME", "Threshold",
           "recorded_thresholds", "write_report"]

REPORT_NAME = "report.html"


def write_report(
    store: AuditStore,
    out_dir: str | os.PathLike[str],
    run_id: str | None = None,
    *,
    thresholds: Mapping[str, Threshold] | None = None,
    summary: RunSummary | None = None,
) -> Path:
    """Write `out_dir/report.html` for run `run_id` (the latest when None); its path.

    `summary`, when given, must be `summarize(store, run_id)`; it saves computing it twice.
    `thresholds` default to those of the safety policy the run started under, as recorded.
    """
    if summary is None or (run_id is not None and summary.run_id != run_id):
        summary = summarize(store, run_id)
    if thresholds is None:
        thresholds = recorded_thresholds(store, summary.policy_hash)
    data = load(store, summary)
    page = render(summary, data, sections(data, thresholds), thresholds)
    target = Path(out_dir)
    try:
        target.mkdir(parents=True, exist_ok=True)
        path = target / REPORT_NAME
        _write_atomically(path, page)
    except OSError as exc:
        raise SummaryError(f"{target}: cannot write the report: {exc.strerror or exc}") from None
    return path


def sections(d: RunData, thresholds: Mapping[str, Threshold]) -> Sections:
    book = risk.returns(d.days, d.equity)
    buy_hold = risk.returns(d.days, d.buy_hold)
    vol_book, sharpe_book = risk.rolling(book)
    vol_bh, sharpe_bh = risk.rolling(buy_hold)
    years = len(d.days) / risk.TRADING_DAYS
    finite = d.equity[np.isfinite(d.equity)]
    traded = [f.notional for f in d.fills]
    costs = Costs(
        fills=len(d.fills),
        traded=float(sum(traded)),
        turnover=risk.turnover(traded, float(finite.mean()) if finite.size else 0.0, years),
        commission=float(sum(f.commission for f in d.fills)),
        slippage=float(sum(f.slippage for f in d.fills)),
    )
    return Sections(
        figures={"book": risk.figures(book, buy_hold),
                 "buy_hold": risk.figures(buy_hold, buy_hold)},
        drawdowns=risk.worst_drawdowns(d.days, d.equity),
        costs=costs,
        effects=risk.rule_effects(d.deciding, book, buy_hold, d.days),
        charts=[(title, charts.fragment(fig)) for title, fig in (
            ("equity", charts.equity_chart(d)),
            ("monthly", charts.monthly_chart(risk.monthly(book))),
            ("rolling", charts.rolling_chart((vol_book, vol_bh), (sharpe_book, sharpe_bh))),
            ("exposure", charts.exposure_chart(d)),
        )],
        symbol_charts=[(f"{symbol}: price, orders, safety facts and actions",
                        charts.fragment(charts.symbol_chart(d, symbol, thresholds)))
                       for symbol in d.symbols],
    )


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".html", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
