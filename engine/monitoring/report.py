"""One self-contained HTML report of a run, rebuilt from its audit records alone.

Charts are drawn with matplotlib's Agg canvas (no display, no pyplot state) and embedded as
base64 PNG, so the report is a single file that can be mailed or archived. Lines are thinned
to a bounded number of points (keeping each bucket's extremes, so spikes survive); the safety
action bands are drawn from every day, exactly.
"""

from __future__ import annotations

import base64
import bisect
import html
import io
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from matplotlib import dates as mdates
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from PIL import Image

from engine.actions import ACTION_NAMES, Action, most_restrictive
from engine.audit.store import AuditStore
from engine.monitoring.summary import (
    NOTABLE_YEARS,
    RunSummary,
    SummaryError,
    cycle_records,
    money,
    pct,
    rebalance_text,
    status_label,
    summarize,
)
from engine.timeutil import TimestampError, parse_utc

REPORT_NAME = "report.html"
#: Points kept per line; beyond this a line is thinned to each bucket's minimum and maximum.
MAX_LINE_POINTS = 2_000

Op = Literal[">=", ">", "<=", "<"]


@dataclass(frozen=True)
class Threshold:
    """A safety fact triggers `action` when `fact op value` holds."""

    op: Op
    value: float
    action: str

    def __post_init__(self) -> None:
        if self.op not in (">=", ">", "<=", "<"):
            raise ValueError(f"threshold operator must be >=, >, <= or <, got {self.op!r}")
        if not math.isfinite(self.value):
            raise ValueError(f"threshold value must be a finite number, got {self.value!r}")

    @property
    def above(self) -> bool:
        return self.op.startswith(">")

    def text(self) -> str:
        return f"{self.action} when {self.op} {self.value:g}"


#: The limits of the default safety policy (policies/safety.yaml).
DEFAULT_THRESHOLDS: Mapping[str, Threshold] = {
    "drift_score": Threshold(">=", 0.8, "halt"),
    "volatility": Threshold(">=", 0.35, "flatten"),
    "coherence": Threshold("<=", 0.5, "block_new"),
    "frs": Threshold("<", 0.4, "wait_confirmation"),
    "meta_reliability": Threshold("<", 0.4, "wait_confirmation"),
}
FACT_LABELS: Mapping[str, str] = {
    "drift_score": "drift score",
    "volatility": "volatility (annualised)",
    "coherence": "coherence",
    "frs": "FRS",
    "meta_reliability": "meta reliability",
}
ACTION_COLOURS: Mapping[str, str] = {
    "halt": "#7f0000",
    "flatten": "#e4572e",
    "block_new": "#f3a712",
    "wait_confirmation": "#9ecae1",
    "allow": "#74c476",
}
_BOOK = "#1f4e79"
_BUY_HOLD = "#8c8c8c"


@dataclass(frozen=True)
class _Mark:
    x: float
    symbol: str
    side: str
    #: "buy", "sell", "denied" or "held"
    what: str
    price: float


@dataclass(frozen=True)
class _RunData:
    x: np.ndarray
    #: Day boundaries for the bands: day i spans edges[i]..edges[i + 1].
    edges: np.ndarray
    equity: np.ndarray
    buy_hold: np.ndarray
    symbols: tuple[str, ...]
    prices: Mapping[str, np.ndarray]
    facts: Mapping[str, Mapping[str, np.ndarray]]
    #: Index into ACTION_NAMES per day; -1 where the symbol had no action that day.
    actions: Mapping[str, np.ndarray]
    book_actions: np.ndarray
    marks: tuple[_Mark, ...]


def recorded_thresholds(store: AuditStore, policy_hash: str | None) -> Mapping[str, Threshold]:
    """The threshold of each safety fact in the policy set recorded under `policy_hash`: the
    single comparison of a rule (or of each branch of an `any`) on that fact. A fact the
    recorded rules compare in any other way keeps no line rather than a wrong one; without
    a recorded set, the default policy's thresholds are drawn."""
    from engine.policy.loader import policy_set_from_texts
    from engine.policy.model import AnyOf, Leaf
    from engine.policy.problems import PolicyError

    activation = store.activation(policy_hash) if policy_hash else None
    if activation is None:
        return DEFAULT_THRESHOLDS
    try:
        policy_set = policy_set_from_texts([(p["path"], p["text"])
                                            for p in activation.body.get("policies", [])])
    except (PolicyError, KeyError, TypeError):
        return DEFAULT_THRESHOLDS
    found: dict[str, list[Threshold]] = {}
    for policy in policy_set.of_kind("SafetyPolicy"):
        for rule in policy.rules:
            leaves = rule.when.items if isinstance(rule.when, AnyOf) else (rule.when,)
            for leaf in leaves:
                if isinstance(leaf, Leaf) and leaf.op in (">=", ">", "<=", "<") and \
                        isinstance(leaf.value, (int, float)) and \
                        not isinstance(leaf.value, bool) and leaf.fact in FACT_LABELS:
                    found.setdefault(leaf.fact, []).append(
                        Threshold(leaf.op, float(leaf.value), rule.action))
    return {fact: ts[0] for fact, ts in found.items() if len(ts) == 1}


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
    data = _load(store, summary)
    images: list[tuple[str, str]] = [("Equity: book against buy & hold", _equity_png(data))]
    for symbol in data.symbols:
        images.append((f"{symbol}: price, safety facts and actions",
                       _symbol_png(data, symbol, thresholds)))
    page = _html(summary, images, thresholds)
    target = Path(out_dir)
    try:
        target.mkdir(parents=True, exist_ok=True)
        path = target / REPORT_NAME
        _write_atomically(path, page)
    except OSError as exc:
        raise SummaryError(f"{target}: cannot write the report: {exc.strerror or exc}") from None
    return path


# -- data ---------------------------------------------------------------------------------------


def _load(store: AuditStore, summary: RunSummary) -> _RunData:
    days = cycle_records(store, summary.run_id)
    symbols: set[str] = set(summary.symbols)
    for _, r in days:
        symbols.update(str(s) for s in _dict(r.body.get("actions")))
    ordered = tuple(sorted(symbols))
    n = len(days)
    moments = [m for m, _ in days]
    numbers = mdates.date2num(moments) if moments else []  # type: ignore[no-untyped-call]
    x = np.asarray(numbers, dtype=float)
    prices = {s: np.full(n, np.nan) for s in ordered}
    facts = {s: {f: np.full(n, np.nan) for f in FACT_LABELS} for s in ordered}
    actions = {s: np.full(n, -1, dtype=int) for s in ordered}
    book = np.full(n, -1, dtype=int)
    equity = np.full(n, np.nan)
    buy_hold = np.full(n, np.nan)
    for i, (_, r) in enumerate(days):
        b = r.body
        equity[i] = _number(b.get("equity"))
        buy_hold[i] = _number(b.get("buy_hold_equity"))
        for s, p in _dict(b.get("prices")).items():
            if s in prices:
                prices[s][i] = _number(p)
        for s, values in _dict(b.get("facts")).items():
            for f, v in _dict(values).items():
                if s in facts and f in facts[s]:
                    facts[s][f][i] = _number(v)
        day_actions = []
        for s, a in _dict(b.get("actions")).items():
            if a in ACTION_NAMES:
                actions[str(s)][i] = ACTION_NAMES.index(a)
                day_actions.append(Action(a))
        if day_actions:
            book[i] = ACTION_NAMES.index(most_restrictive(day_actions).value)
    return _RunData(
        x=x,
        edges=_edges(x),
        equity=equity,
        buy_hold=buy_hold,
        symbols=ordered,
        prices=prices,
        facts=facts,
        actions=actions,
        book_actions=book,
        marks=_marks(store, summary.run_id, x, moments),
    )


_MARKED: Mapping[str, str] = {
    "filled": "fill",
    "denied": "denied",
    "rejected": "denied",
    "failed": "denied",
    "pending_approval": "held",
}


def _marks(
    store: AuditStore, run_id: str, x: np.ndarray, moments: Sequence[datetime]
) -> tuple[_Mark, ...]:
    """One mark per order, on the day it happened: its fill, or else the first time it was
    denied, rejected, failed or held for approval."""
    by_order: dict[str, _Mark] = {}
    for r in store.iter_records("order"):
        b = r.body
        if not isinstance(b, dict) or b.get("run_id") != run_id:
            continue
        what = _MARKED.get(str(b.get("status")))
        client_id = str(b.get("client_id") or r.ref)
        previous = by_order.get(client_id)
        if what is None or (previous is not None and (previous.what != "held" or what != "fill")):
            continue
        try:
            day = bisect.bisect_right(moments, parse_utc(b.get("ts"))) - 1
        except TimestampError:
            continue
        if day < 0:
            continue
        side = str(b.get("side", "")).lower()
        price = _number(b.get("fill_price")) if what == "fill" else math.nan
        if what == "fill":
            what = "sell" if side == "sell" else "buy"
        if not math.isfinite(price):
            price = _number(b.get("price"))
        by_order[client_id] = _Mark(float(x[day]), str(b.get("symbol", "")), side, what, price)
    return tuple(by_order[k] for k in sorted(by_order))


def _edges(x: np.ndarray) -> np.ndarray:
    if x.size == 0:
        return np.array([], dtype=float)
    step = float(np.median(np.diff(x))) if x.size > 1 else 1.0
    return np.append(x, x[-1] + step)


# -- charts -------------------------------------------------------------------------------------


def _figure(ratios: Sequence[float]) -> tuple[Figure, list[Axes]]:
    """A 12-inch wide figure of stacked panels sharing the time axis, `ratios` in inches.

    Margins are fixed rather than computed by a layout engine: laying out seven date axes
    costs more than drawing them.
    """
    top_in, bottom_in, gap_in = 0.45, 1.0, 0.3
    height = top_in + bottom_in + sum(ratios) + gap_in * (len(ratios) - 1)
    fig = Figure(figsize=(12, height), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(
        len(ratios), 1, sharex=True, squeeze=False,
        gridspec_kw={
            "height_ratios": list(ratios),
            "left": 1.0 / 12, "right": 1 - 0.25 / 12,
            "top": 1 - top_in / height, "bottom": bottom_in / height,
            "hspace": gap_in / (sum(ratios) / len(ratios)),
        },
    )
    return fig, [axes[i][0] for i in range(len(ratios))]


def _equity_png(d: _RunData) -> str:
    fig, (top, mid, band) = _figure([3.4, 1.4, 0.4])
    _line(top, d.x, d.equity, colour=_BOOK, label="book", width=1.3)
    _line(top, d.x, d.buy_hold, colour=_BUY_HOLD, label="buy & hold", width=1.0)
    equity_at = dict(zip(d.x.tolist(), d.equity.tolist(), strict=True))
    _order_marks(top, [(m, equity_at.get(m.x, math.nan)) for m in d.marks])
    top.set_title("Book equity against buy & hold, with orders", loc="left", fontsize=12)
    top.set_ylabel("equity")
    top.yaxis.set_major_formatter(_thousands)
    top.legend(loc="upper left", fontsize=8, ncols=3, framealpha=0.9)
    top.grid(alpha=0.3)

    _line(mid, d.x, -_drawdown(d.equity), colour=_BOOK, label="book", width=1.0)
    _line(mid, d.x, -_drawdown(d.buy_hold), colour=_BUY_HOLD, label="buy & hold", width=0.9)
    mid.set_ylabel("drawdown")
    mid.yaxis.set_major_formatter(_percent)
    mid.legend(loc="lower left", fontsize=8, ncols=2, framealpha=0.9)
    mid.grid(alpha=0.3)

    _band(band, d.edges, d.book_actions, "book (worst)")
    _dates(band)
    return _png(fig)


def _symbol_png(d: _RunData, symbol: str, thresholds: Mapping[str, Threshold]) -> str:
    names = list(FACT_LABELS)
    fig, axes = _figure([2.4, *([1.2] * len(names)), 0.4])
    price = axes[0]
    _line(price, d.x, d.prices[symbol], colour=_BOOK, label="price", width=1.0)
    prices = dict(zip(d.x.tolist(), d.prices[symbol].tolist(), strict=True))
    own = [(m, m.price if math.isfinite(m.price) else prices.get(m.x, math.nan))
           for m in d.marks if m.symbol == symbol]
    _order_marks(price, own)
    price.set_title(f"{symbol}: price with orders, safety facts against their thresholds",
                    loc="left", fontsize=12)
    price.set_ylabel("price")
    price.legend(loc="upper left", fontsize=8, ncols=5, framealpha=0.9)
    price.grid(alpha=0.3)
    for ax, name in zip(axes[1:-1], names, strict=True):
        values = d.facts[symbol][name]
        _line(ax, d.x, values, colour="#333333", label=FACT_LABELS[name], width=0.8)
        limit = thresholds.get(name)
        if limit is not None:
            _threshold(ax, values, limit)
        ax.set_ylabel(FACT_LABELS[name], fontsize=8)
        ax.grid(alpha=0.3)
        # Above the panel, in the gap between panels, so no data is hidden under it.
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 0.98), fontsize=7.5, ncols=2,
                  frameon=False, borderaxespad=0.1, borderpad=0.1)
    _band(axes[-1], d.edges, d.actions[symbol], symbol)
    _dates(axes[-1])
    return _png(fig)


def _line(ax: Axes, x: np.ndarray, y: np.ndarray, *, colour: str, label: str,
          width: float) -> None:
    xs, ys = thin(x, y, MAX_LINE_POINTS)
    ax.plot(xs, ys, color=colour, linewidth=width, label=label)


def thin(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most about `max_points` points of (x, y), keeping each bucket's minimum and maximum
    in their order, so a one-day spike is still drawn. Gaps (NaN) stay gaps."""
    n = x.size
    if n <= max_points:
        return x, y
    size = math.ceil(n / max(1, max_points // 3))
    rows = math.ceil(n / size)
    padded = np.full(rows * size, np.nan)
    padded[:n] = y
    grid = padded.reshape(rows, size)
    finite = np.isfinite(grid)
    starts = np.arange(rows) * size
    lows = starts + np.argmin(np.where(finite, grid, np.inf), axis=1)
    highs = starts + np.argmax(np.where(finite, grid, -np.inf), axis=1)
    # A bucket with a gap keeps its first gap, so the line breaks where the data does.
    gaps = starts + np.argmax(~finite, axis=1)
    has_gap = (~finite).any(axis=1)
    idx = np.unique(np.concatenate((lows, highs, gaps[has_gap])))
    idx = idx[idx < n]
    return x[idx], y[idx]


def _threshold(ax: Axes, values: np.ndarray, limit: Threshold) -> None:
    finite = values[np.isfinite(values)]
    lo = min(float(finite.min()) if finite.size else limit.value, limit.value)
    hi = max(float(finite.max()) if finite.size else limit.value, limit.value)
    pad = (hi - lo) * 0.05 or 0.05
    lo, hi = lo - pad, hi + pad
    ax.axhline(limit.value, color="#c0392b", linestyle="--", linewidth=1.1, label=limit.text())
    if limit.above:
        ax.axhspan(limit.value, hi, color="#c0392b", alpha=0.1, linewidth=0)
    else:
        ax.axhspan(lo, limit.value, color="#c0392b", alpha=0.1, linewidth=0)
    ax.set_ylim(lo, hi)


_MARK_STYLE: Mapping[str, dict[str, Any]] = {
    "buy": {"marker": "^", "color": "#1a9850", "s": 22, "label": "buy (filled)"},
    "sell": {"marker": "v", "color": "#d73027", "s": 22, "label": "sell (filled)"},
    "denied": {"marker": "x", "color": "#000000", "s": 22, "label": "denied / rejected / failed"},
    "held": {"marker": "o", "facecolors": "none", "edgecolors": "#7b3294", "s": 26,
             "label": "held for approval"},
}


def _order_marks(ax: Axes, marks: Sequence[tuple[_Mark, float]]) -> None:
    for what, style in _MARK_STYLE.items():
        points = [(m.x, y) for m, y in marks if m.what == what and math.isfinite(y)]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.scatter(xs, ys, zorder=3, linewidths=1.0, **style)


def action_runs(codes: np.ndarray) -> list[tuple[int, int, int]]:
    """Runs of equal codes as (first day, day after the last, code), in order."""
    if codes.size == 0:
        return []
    change = np.flatnonzero(np.diff(codes)) + 1
    starts = np.concatenate(([0], change)).astype(int)
    ends = np.concatenate((change, [codes.size])).astype(int)
    return [(int(a), int(b), int(codes[a])) for a, b in zip(starts, ends, strict=True)]


def _band(ax: Axes, edges: np.ndarray, codes: np.ndarray, label: str) -> None:
    """Every day coloured by its action: a run of equal actions is one bar."""
    spans: dict[int, list[tuple[float, float]]] = {}
    for start, end, code in action_runs(codes):
        if code >= 0:
            spans.setdefault(code, []).append(
                (float(edges[start]), float(edges[end] - edges[start])))
    for code, bars in sorted(spans.items()):
        ax.broken_barh(bars, (0, 1), facecolors=ACTION_COLOURS[ACTION_NAMES[code]], linewidth=0)
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    if edges.size:
        ax.set_xlim(float(edges[0]), float(edges[-1]))
    handles = [Patch(facecolor=ACTION_COLOURS[a], label=a) for i, a in enumerate(ACTION_NAMES)
               if i in spans]
    if handles:
        figure = ax.get_figure()
        if isinstance(figure, Figure):
            figure.legend(handles=handles, loc="lower center", ncols=len(handles), fontsize=8,
                          frameon=False, title="safety action (colour band)",
                          title_fontsize=8, bbox_to_anchor=(0.5, 0.0))


def _dates(ax: Axes) -> None:
    locator = mdates.AutoDateLocator(minticks=6, maxticks=14)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    formatter = mdates.ConciseDateFormatter(locator)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_formatter(formatter)
    ax.set_xlabel("date (UTC)")


def _drawdown(values: np.ndarray) -> np.ndarray:
    filled = np.where(np.isfinite(values), values, -np.inf)
    peaks = np.maximum.accumulate(filled)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(peaks > 0, 1.0 - values / peaks, np.nan)
    return np.asarray(out, dtype=float)


def _thousands(value: float, _pos: float) -> str:
    return f"{value:,.0f}"


def _percent(value: float, _pos: float) -> str:
    return f"{value:.0%}"


def _png(fig: Figure) -> str:
    """The figure as base64 PNG, opaque RGB: some viewers mishandle an alpha channel."""
    raw = io.BytesIO()
    fig.savefig(raw, format="rgba", dpi=fig.dpi)
    width, height = fig.canvas.get_width_height(physical=True)
    rgb = np.frombuffer(raw.getbuffer(), dtype=np.uint8).reshape(height, width, 4)[..., :3]
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


# -- page ---------------------------------------------------------------------------------------

_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1250px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; }
th { background: #f4f4f4; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.notable td { background: #fff4e0; font-weight: 600; }
.sev-critical { color: #a50f15; font-weight: 700; } .sev-warning { color: #b35806; }
.sev-info { color: #2166ac; }
img { width: 100%; max-width: 1200px; border: 1px solid #eee; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 14px; }
dt { font-weight: 600; } dd { margin: 0; }
pre { background: #f8f8f8; padding: 1em; overflow-x: auto; font-size: 0.8em; }
"""


def _html(s: RunSummary, images: Sequence[tuple[str, str]],
          thresholds: Mapping[str, Threshold]) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>FuggerBot run {e(s.run_id)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>FuggerBot run {e(s.run_id)}</h1>",
        "<dl>",
    ]
    facts = [
        ("started", s.started_at or "-"),
        ("finished", s.finished_at or "not recorded"),
        ("days", f"{s.days} ({(s.first_day or '-')[:10]} .. {(s.last_day or '-')[:10]})"),
        ("symbols", ", ".join(s.symbols) or "-"),
        ("policies", ", ".join(f"{n} {v}" for n, v in s.policies) or "-"),
        ("policy hash", s.policy_hash or "-"),
        ("facts", s.facts_file or "-"),
        ("portfolio", s.portfolio_file or "-"),
        ("approval rule", s.approval_rule or "not recorded"),
        ("resume rule", s.resume_rule or "not recorded"),
    ]
    parts += [f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in facts]
    parts.append("</dl>")

    parts.append("<h2>Performance</h2>")
    parts.append(_html_table(
        ["", "book", "buy &amp; hold"],
        [["start equity", money(s.book.start), money(s.buy_hold.start)],
         ["end equity", money(s.book.end), money(s.buy_hold.end)],
         ["total return", pct(s.book.total_return, True), pct(s.buy_hold.total_return, True)],
         ["annualised volatility", pct(s.book.annualised_volatility),
          pct(s.buy_hold.annualised_volatility)],
         ["max drawdown", pct(s.book.max_drawdown), pct(s.buy_hold.max_drawdown)]],
        escape_headers=False,
    ))
    for title, data in images[:1]:
        parts.append(f'<img alt="{e(title)}" src="data:image/png;base64,{data}">')

    parts.append("<h2>Safety actions</h2>")
    book = dict(s.book_days_by_action)
    parts.append(_html_table(
        ["action", "symbol-days", "book days (worst action)"],
        [[a, str(n), str(book.get(a, 0))] for a, n in s.symbol_days_by_action],
    ))
    parts.append("<p>Trading state days: "
                 + e(", ".join(f"{k} {v}" for k, v in s.days_by_trading_state)) + "</p>")
    limits = ", ".join(f"{FACT_LABELS.get(f, f)}: {t.text()}" for f, t in thresholds.items())
    parts.append(f"<p>Thresholds drawn: {e(limits)}.</p>")

    parts.append("<h2>Rules</h2>")
    deciding = dict(s.rules_deciding)
    fired = dict(s.rules_fired)
    rows = [[r, str(n), str(deciding.get(r, 0))] for r, n in s.rules_fired]
    rows += [[r, "0", str(n)] for r, n in s.rules_deciding if r not in fired]
    parts.append(_html_table(["rule", "fired (symbol-days)", "deciding (symbol-days)"], rows)
                 if rows else "<p>No rule fired.</p>")
    parts.append(f"<p>{e(rebalance_text(s))}</p>")

    parts.append(f"<h2>Orders ({s.orders})</h2>")
    final = dict(s.orders_final_status)
    parts.append(_html_table(
        ["status", "orders that reached it", "orders whose last status it is"],
        [[status_label(st), str(n), str(final.get(st, 0))] for st, n in s.orders_by_status],
    ))

    parts.append("<h2>By year</h2>")
    parts.append(f"<p>Notable years ({', '.join(str(y) for y in NOTABLE_YEARS)}) are "
                 "highlighted. Symbol-days per action; book days by the book's worst action.</p>")
    parts.append(_years_table(s))

    for title, data in images[1:]:
        parts.append(f"<h2>{e(title)}</h2>")
        parts.append(f'<img alt="{e(title)}" src="data:image/png;base64,{data}">')

    severities = ", ".join(f"{k} {v}" for k, v in s.alerts_by_severity)
    parts.append(f"<h2>Alerts ({s.alerts}: {e(severities)}; sink failures "
                 f"{s.sink_failures})</h2>")
    if s.last_alerts:
        parts.append(f"<p>The last {len(s.last_alerts)}.</p>")
        parts.append("<table><tr><th>time</th><th>severity</th><th>key</th><th>title</th>"
                     "<th>message</th></tr>")
        for a in s.last_alerts:
            parts.append(
                f"<tr><td>{e(a.ts)}</td><td class=\"sev-{e(a.severity)}\">{e(a.severity)}</td>"
                f"<td>{e(a.key)}</td><td>{e(a.title)}</td><td>{e(a.message)}</td></tr>")
        parts.append("</table>")
    else:
        parts.append("<p>No alert was raised.</p>")

    parts.append("<h2>Summary as text</h2>")
    parts.append(f'<pre class="summary">{e(s.render_text())}</pre>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _years_table(s: RunSummary) -> str:
    e = html.escape
    head = ["year", "days", *[f"{a} (symbol-days)" for a in ACTION_NAMES],
            *[f"{a} (book days)" for a in ACTION_NAMES], "book return", "buy &amp; hold return"]
    lines = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for y in s.years:
        sym, book = dict(y.symbol_days), dict(y.book_days)
        cells = [str(y.year), str(y.days), *[str(sym.get(a, 0)) for a in ACTION_NAMES],
                 *[str(book.get(a, 0)) for a in ACTION_NAMES], pct(y.book_return, True),
                 pct(y.buy_hold_return, True)]
        css = ' class="notable"' if y.year in NOTABLE_YEARS else ""
        lines.append(f"<tr{css}><td>{cells[0]}</td>"
                     + "".join(f'<td class="n">{e(c)}</td>' for c in cells[1:]) + "</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *,
                escape_headers: bool = True) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h) if escape_headers else h}</th>" for h in headers)
    body = "".join(
        "<tr>" + f"<td>{e(r[0])}</td>" + "".join(f'<td class="n">{e(c)}</td>' for c in r[1:])
        + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _dict(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: object) -> float:
    """A finite number, or NaN (drawn as a gap) for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return math.nan
    return float(value)


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
