"""The report's charts as plotly figures: they zoom and show values on hover.

Each chart is returned as an HTML fragment without plotly.js; the page includes the library
once, inline, so the file works offline. Order markers sit in a strip of their own under the
line they belong to, so they never hide it; safety facts are drawn as a rolling band and
median with their threshold and the start of each breach marked, not as a daily line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from engine.actions import ACTION_NAMES
from engine.monitoring.report.data import Mark, RunData
from engine.monitoring.report.thresholds import FACT_LABELS, Threshold

ACTION_COLOURS: Mapping[str, str] = {
    "halt": "#7f0000",
    "flatten": "#e4572e",
    "block_new": "#f3a712",
    "wait_confirmation": "#9ecae1",
    "allow": "#74c476",
}
BOOK = "#1f4e79"
BUY_HOLD = "#8c8c8c"
#: Days in the rolling window of the safety-fact bands (about a trading month).
FACT_WINDOW = 21
#: Points kept per line of a fact's band.
MAX_BAND_POINTS = 1_000
_MARK_STYLE: Mapping[str, tuple[str, str, str]] = {
    # what: (marker symbol, colour, legend label)
    "buy": ("triangle-up", "#1a9850", "buy (filled)"),
    "sell": ("triangle-down", "#d73027", "sell (filled)"),
    "denied": ("x-thin-open", "#000000", "denied / rejected / failed"),
    "held": ("circle-open", "#7b3294", "held for approval"),
}
_CONFIG = {"displaylogo": False, "responsive": True}


def fragment(fig: go.Figure) -> str:
    """The figure as a <div> and its script, without plotly.js."""
    fig.update_layout(template="plotly_white", margin={"l": 70, "r": 20, "t": 90, "b": 40},
                      hovermode="x unified", title={"y": 0.98, "yanchor": "top"},
                      legend={"orientation": "h", "y": 1.0, "yanchor": "bottom"})
    html: str = fig.to_html(full_html=False, include_plotlyjs=False, config=_CONFIG)
    return html


def equity_chart(d: RunData) -> go.Figure:
    fig = make_subplots(rows=4, cols=1, shared_xaxes=True, vertical_spacing=0.03,
                        row_heights=[0.52, 0.22, 0.16, 0.1])
    x = _dates(d.days)
    fig.add_trace(go.Scatter(x=x, y=_round(d.equity, 2), name="book",
                             line={"color": BOOK, "width": 1.6}), row=1, col=1)
    fig.add_trace(go.Scatter(x=x, y=_round(d.buy_hold, 2), name="buy & hold",
                             line={"color": BUY_HOLD, "width": 1.2}), row=1, col=1)
    for values, name, colour in ((d.equity, "book drawdown", BOOK),
                                 (d.buy_hold, "buy & hold drawdown", BUY_HOLD)):
        fig.add_trace(go.Scatter(x=x, y=_round(-_drawdown(values), 4), name=name,
                                 line={"color": colour, "width": 1}, showlegend=False),
                      row=2, col=1)
    _order_strip(fig, d, d.marks, row=3)
    _band(fig, d, d.book_actions, "book", row=4)
    fig.update_yaxes(title_text="equity", row=1, col=1)
    fig.update_yaxes(title_text="drawdown", tickformat=".0%", row=2, col=1)
    fig.update_layout(height=720, title="Book equity against buy & hold")
    return fig


def monthly_chart(table: pd.DataFrame) -> go.Figure:
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
              "Dec"]
    z = table.to_numpy(dtype=float)
    limit = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 0.1
    text = [[("" if not np.isfinite(v) else f"{v:+.1%}") for v in row] for row in z]
    fig = go.Figure(go.Heatmap(
        z=[_round(row, 4) for row in z], x=months, y=[str(y) for y in table.index], text=text,
        texttemplate="%{text}", colorscale="RdYlGn", zmid=0, zmin=-limit, zmax=limit,
        hovertemplate="%{y} %{x}: %{text}<extra></extra>", colorbar={"tickformat": ".0%"}))
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_layout(height=max(300, 24 * len(table) + 120),
                      title="Book: monthly returns")
    return fig


def rolling_chart(vol: Sequence[pd.Series], sharpe: Sequence[pd.Series]) -> go.Figure:
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.06)
    for row, pair, fmt in ((1, vol, ".0%"), (2, sharpe, ".2f")):
        for series, name, colour in zip(pair, ("book", "buy & hold"), (BOOK, BUY_HOLD),
                                        strict=True):
            fig.add_trace(go.Scatter(x=_dates(pd.DatetimeIndex(series.index)),
                                     y=_round(series.to_numpy(dtype=float), 4), name=name,
                                     line={"color": colour, "width": 1.3},
                                     showlegend=row == 1), row=row, col=1)
        fig.update_yaxes(tickformat=fmt, row=row, col=1)
    fig.update_yaxes(title_text="volatility (1 year)", row=1, col=1)
    fig.update_yaxes(title_text="Sharpe (1 year)", row=2, col=1)
    fig.update_layout(height=520, title="Rolling one-year volatility and Sharpe ratio")
    return fig


def exposure_chart(d: RunData) -> go.Figure:
    x = _dates(d.days)
    fig = go.Figure()
    with np.errstate(divide="ignore", invalid="ignore"):
        cash = np.where(d.equity > 0, d.cash / d.equity, np.nan)
    for symbol in d.symbols:
        fig.add_trace(go.Scatter(x=x, y=_round(d.weights[symbol], 4), name=symbol,
                                 stackgroup="book", line={"width": 0.5}))
    fig.add_trace(go.Scatter(x=x, y=_round(cash, 4), name="cash", stackgroup="book",
                             line={"width": 0.5, "color": "#bbbbbb"}))
    gross = np.sum([np.abs(np.nan_to_num(d.weights[s])) for s in d.symbols], axis=0) \
        if d.symbols else np.zeros(len(x))
    fig.add_trace(go.Scatter(x=x, y=_round(gross, 4), name="gross exposure",
                             line={"color": "#000000", "width": 1.2, "dash": "dot"}))
    fig.update_yaxes(tickformat=".0%", title_text="share of equity")
    fig.update_layout(height=420, title="Exposure: each position's weight, cash and gross")
    return fig


def symbol_chart(d: RunData, symbol: str, thresholds: Mapping[str, Threshold]) -> go.Figure:
    names = list(FACT_LABELS)
    rows = 3 + len(names)
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.02,
                        row_heights=[0.26, 0.07, *[0.12] * len(names), 0.05])
    x = _dates(d.days)
    fig.add_trace(go.Scatter(x=x, y=_round(d.prices[symbol], 4), name="price",
                             line={"color": BOOK, "width": 1.2}), row=1, col=1)
    fig.update_yaxes(title_text="price", row=1, col=1)
    _order_strip(fig, d, [m for m in d.marks if m.symbol == symbol], row=2)
    for i, name in enumerate(names, start=3):
        _fact_panel(fig, x, d.facts[symbol][name], name, thresholds.get(name), row=i)
    _band(fig, d, d.actions[symbol], symbol, row=rows)
    fig.update_layout(height=300 + 130 * len(names),
                      title=f"{symbol}: price, orders, safety facts against their thresholds")
    return fig


def _fact_panel(fig: go.Figure, x: list[str], values: np.ndarray, name: str,
                limit: Threshold | None, *, row: int) -> None:
    rolled = pd.Series(values).rolling(FACT_WINDOW, min_periods=1, center=True)
    # A rolling band is smooth: every few days of it draw the same picture with fewer bytes.
    keep = np.arange(0, len(x), max(1, len(x) // MAX_BAND_POINTS))
    xs = [x[i] for i in keep]
    low, mid, high = (q.to_numpy()[keep] for q in
                      (rolled.quantile(0.1), rolled.median(), rolled.quantile(0.9)))
    label = FACT_LABELS[name]
    fig.add_trace(go.Scatter(x=xs, y=_round(high, 4), line={"width": 0},
                             hoverinfo="skip", showlegend=False), row=row, col=1)
    fig.add_trace(go.Scatter(x=xs, y=_round(low, 4), line={"width": 0},
                             fill="tonexty", fillcolor="rgba(80,80,80,0.18)",
                             name=f"{label}: 10-90% of {FACT_WINDOW} days", hoverinfo="skip",
                             showlegend=False), row=row, col=1)
    fig.add_trace(go.Scatter(x=xs, y=_round(mid, 4), name=f"{label} (median)",
                             line={"color": "#333333", "width": 1}, showlegend=False),
                  row=row, col=1)
    if limit is not None:
        fig.add_hline(y=limit.value, line={"color": "#c0392b", "dash": "dash", "width": 1},
                      annotation_text=limit.text(), annotation_position="top left",
                      annotation_font_size=10, row=row, col=1)
        breached = _breach_starts(values, limit)
        fig.add_trace(go.Scatter(
            x=[x[i] for i in breached], y=[limit.value] * len(breached), mode="markers",
            marker={"symbol": "line-ns-open", "color": "#c0392b", "size": 9},
            name=f"{label}: breach starts", showlegend=False,
            hovertemplate=f"{label} crosses {limit.op} {limit.value:g}<extra></extra>"),
            row=row, col=1)
    fig.update_yaxes(title_text=label, title_font_size=10, row=row, col=1)


def _breach_starts(values: np.ndarray, limit: Threshold) -> list[int]:
    """The first day of each run of days on which the fact is beyond its threshold."""
    with np.errstate(invalid="ignore"):
        beyond = {">=": values >= limit.value, ">": values > limit.value,
                  "<=": values <= limit.value, "<": values < limit.value}[limit.op]
    beyond = np.asarray(beyond, dtype=bool)
    starts = np.flatnonzero(beyond & ~np.concatenate(([False], beyond[:-1])))
    return [int(i) for i in starts]


def _order_strip(fig: go.Figure, d: RunData, marks: Sequence[Mark], *, row: int) -> None:
    x = _dates(d.days)
    for what, (symbol, colour, label) in _MARK_STYLE.items():
        chosen = [m for m in marks if m.what == what]
        if not chosen:
            continue
        fig.add_trace(go.Scatter(
            x=[x[m.day] for m in chosen], y=[label] * len(chosen), mode="markers", name=label,
            marker={"symbol": symbol, "color": colour, "size": 7, "opacity": 0.7},
            text=[f"{m.symbol} {m.what} at {m.price:,.2f}" for m in chosen],
            hovertemplate="%{text}<extra></extra>"), row=row, col=1)
    fig.update_yaxes(title_text="orders", type="category", row=row, col=1,
                     categoryorder="array",
                     categoryarray=[label for _, _, label in _MARK_STYLE.values()])


def _band(fig: go.Figure, d: RunData, codes: np.ndarray, label: str, *, row: int) -> None:
    """Every day coloured by its safety action."""
    n = len(ACTION_NAMES)
    scale: list[list[object]] = []
    for i, action in enumerate(ACTION_NAMES):
        scale += [[i / n, ACTION_COLOURS[action]], [(i + 1) / n, ACTION_COLOURS[action]]]
    z = np.where(codes >= 0, codes, np.nan).astype(float)
    names = [ACTION_NAMES[c] if c >= 0 else "-" for c in codes.tolist()]
    fig.add_trace(go.Heatmap(x=_dates(d.days), y=[label], z=[z.tolist()], text=[names],
                             colorscale=scale, zmin=-0.5, zmax=n - 0.5, showscale=False,
                             hovertemplate="%{text}<extra>" + label + "</extra>"),
                  row=row, col=1)
    fig.update_yaxes(showticklabels=True, row=row, col=1)


def _drawdown(values: np.ndarray) -> np.ndarray:
    filled = np.where(np.isfinite(values), values, -np.inf)
    peaks = np.maximum.accumulate(filled)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(peaks > 0, 1.0 - values / peaks, np.nan)
    return np.asarray(out, dtype=float)


def _dates(days: pd.DatetimeIndex) -> list[str]:
    return [d.strftime("%Y-%m-%d") for d in days]


def _round(values: np.ndarray, digits: int) -> list[float | None]:
    """Plain numbers for the page, gaps as None: fewer bytes than plotly's full floats."""
    return [None if not np.isfinite(v) else round(float(v), digits)
            for v in np.asarray(values, dtype=float).ravel()]
