"""Build daily fact snapshots for SP500, NASDAQ and WTI from the price history bundled with `arch`.

The facts of day t are computed from prices up to and including day t only. Every formula and
constant is documented in examples/README.md; the constants below are the one source of them.

    python -m examples.build_facts --out examples/history.jsonl --stats
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Final, TextIO

import numpy as np
import numpy.typing as npt
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from engine.actions import Action
from engine.catalogue import CATALOGUE
from engine.policy.loader import load_policy_set
from engine.policy.model import Condition, facts_of
from engine.rules.reference import holds

Array = npt.NDArray[np.float64]

#: Sorted, because lines are ordered by ts, then symbol.
SYMBOLS: Final[tuple[str, ...]] = ("NASDAQ", "SP500", "WTI")
FIRST_DAY: Final = date(1999, 1, 1)
LAST_DAY: Final = date(2018, 12, 31)
#: 16:00 New York is 21:00 UTC in winter and 20:00 UTC in summer; one fixed stamp is never
#: earlier than the close, so no snapshot claims to know a price before it was printed.
CLOSE_TIME: Final = "21:00:00Z"
DEFAULT_OUT: Final = Path(__file__).with_name("history.jsonl")

VOL_WINDOW: Final = 20  # daily log returns in the realised volatility
TRADING_DAYS: Final = 252  # annualisation: sqrt(252)
HORIZON: Final = 20  # trading days the forecast looks ahead
REVERSAL_WINDOW: Final = 20  # trading days of past log return the forecast bets against
REVERSAL_SHRINK: Final = 0.5  # fraction of the scaled past move the forecast expects to revert
DRIFT_RECENT: Final = 20  # resolved forecasts in the recent RMSE
DRIFT_LONG_MIN: Final = 120  # resolved forecasts before the long-run RMSE counts
RELIABILITY_WINDOW: Final = 60  # resolved forecasts behind frs and meta_reliability
META_GAIN: Final = 1.5  # meta_reliability = 1 - META_GAIN * |mean issued frs - hit rate|
COHERENCE_WINDOW: Final = 20  # daily log returns in the pairwise correlations

FACT_NAMES: Final[tuple[str, ...]] = (
    "price",
    "volatility",
    "expected_return",
    "drift_score",
    "coherence",
    "frs",
    "meta_reliability",
)
DECIMALS: Final = 6


class DataError(Exception):
    """Input prices or computed facts that cannot make a valid snapshot."""


@dataclass(frozen=True)
class Snapshot:
    """One symbol's facts at one trading day's close, rounded as they are written."""

    ts: str
    symbol: str
    price: float
    volatility: float
    expected_return: float
    drift_score: float
    coherence: float
    frs: float
    meta_reliability: float


# --------------------------------------------------------------------------- prices


def load_prices() -> pd.DataFrame:
    """Daily closes of the three symbols, 1999..2018, on days where all three are valid and > 0."""
    try:
        from arch.data import nasdaq, sp500, wti
    except ImportError as exc:
        raise DataError(
            "the price history comes with the 'arch' package (a dev dependency): "
            "install it with `pip install -e '.[dev]'`"
        ) from exc
    series = {
        "NASDAQ": nasdaq.load()["Adj Close"],
        "SP500": sp500.load()["Adj Close"],
        "WTI": wti.load()["DCOILWTICO"],
    }
    frame = pd.concat(series, axis=1, join="outer", sort=True)
    frame = frame.apply(pd.to_numeric, errors="coerce").astype("float64")
    days = pd.DatetimeIndex(frame.index).normalize()
    in_span = (days >= pd.Timestamp(FIRST_DAY)) & (days <= pd.Timestamp(LAST_DAY))
    values = frame.to_numpy()
    valid = in_span & np.isfinite(values).all(axis=1) & (values > 0).all(axis=1)
    selected: pd.DataFrame = frame.loc[valid, list(SYMBOLS)]
    return selected


def _check_prices(prices: pd.DataFrame) -> Array:
    if tuple(prices.columns) != SYMBOLS:
        raise DataError(f"price columns must be {list(SYMBOLS)}, got {list(prices.columns)}")
    if not isinstance(prices.index, pd.DatetimeIndex):
        raise DataError("prices must be indexed by date")
    if not prices.index.is_monotonic_increasing or not prices.index.is_unique:
        raise DataError("price dates must be strictly increasing")
    try:
        values = prices.to_numpy(dtype="float64")
    except (TypeError, ValueError) as exc:
        raise DataError(f"prices must be numbers: {exc}") from exc
    bad = ~(np.isfinite(values) & (values > 0))
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise DataError(
            f"price of {SYMBOLS[col]} on {prices.index[row]:%Y-%m-%d} is {values[row, col]!r}; "
            "every price must be a finite number > 0"
        )
    return values


# --------------------------------------------------------------------------- rolling helpers


def _trailing(x: Array, n: int, reduce: Callable[[Array], Array]) -> Array:
    """`reduce` over each trailing window of `n` rows of `x` (T, k); NaN until `n` rows exist.

    Each window is reduced on its own, so a value depends on its window's rows and nothing else.
    """
    out = np.full(x.shape, np.nan)
    if len(x) >= n:
        out[n - 1 :] = reduce(sliding_window_view(x, n, axis=0))
    return out


def _mean(w: Array) -> Array:
    return np.asarray(np.mean(w, axis=-1), dtype=np.float64)


def _std(w: Array) -> Array:
    return np.asarray(np.std(w, axis=-1, ddof=1), dtype=np.float64)


def _lag(x: Array, k: int) -> Array:
    out = np.full(x.shape, np.nan)
    out[k:] = x[: len(x) - k]
    return out


def _expanding_mean(x: Array, min_count: int) -> Array:
    """Mean of each column from its first defined value up to each row, once `min_count` exist."""
    out = np.full(x.shape, np.nan)
    for col in range(x.shape[1]):
        defined = np.flatnonzero(~np.isnan(x[:, col]))
        if len(defined) == 0:
            continue
        first = int(defined[0])
        running = np.cumsum(x[first:, col]) / np.arange(1, len(x) - first + 1)
        out[first + min_count - 1 :, col] = running[min_count - 1 :]
    return out


def _mean_pairwise_correlation(r: Array, n: int) -> Array:
    """Mean of the pairwise Pearson correlations of the columns over each trailing window."""
    out = np.full(len(r), np.nan)
    if len(r) < n:
        return out
    w = sliding_window_view(r, n, axis=0)  # (T - n + 1, k, n)
    d = w - w.mean(axis=-1, keepdims=True)
    cov = np.einsum("tin,tjn->tij", d, d)
    k = r.shape[1]
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    corr = [cov[:, i, j] / np.sqrt(cov[:, i, i] * cov[:, j, j]) for i, j in pairs]
    out[n - 1 :] = np.mean(corr, axis=0)
    return out


# --------------------------------------------------------------------------- facts


def fact_arrays(values: Array) -> dict[str, Array]:
    """Every fact for every day (rows) and symbol (columns); NaN where history is too short.

    Row t uses rows 0..t of `values` only.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        lp = np.log(values)
        r = lp - _lag(lp, 1)
        sigma = _trailing(r, VOL_WINDOW, _std)  # daily standard deviation
        volatility = sigma * math.sqrt(TRADING_DAYS)

        # Forecast of the next HORIZON-day log return, issued at the close of day t: short-term
        # reversal, so it expects a fall to be partly undone and a rise to be partly given back.
        g = -REVERSAL_SHRINK * (lp - _lag(lp, REVERSAL_WINDOW)) * (HORIZON / REVERSAL_WINDOW)
        expected_return = np.expm1(g)

        # Forecasts issued HORIZON days ago resolve today.
        realised = lp - _lag(lp, HORIZON)
        issued = _lag(g, HORIZON)
        error = realised - issued
        defined = ~np.isnan(error)
        hit = np.where(defined, (issued * realised > 0).astype(np.float64), np.nan)
        band = _lag(sigma, HORIZON) * math.sqrt(HORIZON)  # forecast's own 1-sigma spread

        sq = error**2
        recent_rmse = np.sqrt(_trailing(sq, DRIFT_RECENT, _mean))
        long_rmse = np.sqrt(_expanding_mean(sq, DRIFT_LONG_MIN))
        ratio = recent_rmse / long_rmse
        drift_score = -np.expm1(-np.maximum(ratio - 1.0, 0.0))

        hit_rate = _trailing(hit, RELIABILITY_WINDOW, _mean)
        spread_ratio = np.sqrt(
            _trailing(sq, RELIABILITY_WINDOW, _mean) / _trailing(band**2, RELIABILITY_WINDOW, _mean)
        )
        calibration = np.where(spread_ratio > 0, np.minimum(spread_ratio, 1.0 / spread_ratio), 0.0)
        calibration = np.where(np.isnan(spread_ratio), np.nan, calibration)
        frs = np.sqrt(hit_rate * calibration)

        issued_frs = _trailing(_lag(frs, HORIZON), RELIABILITY_WINDOW, _mean)
        meta_reliability = np.clip(1.0 - META_GAIN * np.abs(issued_frs - hit_rate), 0.0, 1.0)
        meta_reliability = np.where(np.isnan(issued_frs + hit_rate), np.nan, meta_reliability)

        z = g / sigma
        strength = np.abs(z).sum(axis=1)
        agreement = np.where(strength > 0, np.abs(z.sum(axis=1)) / strength, 0.0)
        agreement = np.where(np.isnan(strength), np.nan, agreement)
        co_movement = (1.0 + _mean_pairwise_correlation(r, COHERENCE_WINDOW)) / 2.0
        coherence_day = 0.5 * co_movement + 0.5 * agreement
        coherence = np.repeat(coherence_day[:, None], values.shape[1], axis=1)

    return {
        "price": values.astype(np.float64),
        "volatility": volatility,
        "expected_return": expected_return,
        "drift_score": drift_score,
        "coherence": coherence,
        "frs": frs,
        "meta_reliability": meta_reliability,
    }


def _rounded(x: float) -> float:
    # Adding 0.0 turns -0.0 into 0.0, so a value never prints as "-0.0".
    return round(x, DECIMALS) + 0.0


def _check_fact(name: str, value: float, day: str, symbol: str) -> None:
    spec = CATALOGUE[name]
    ok = math.isfinite(value) and spec.in_range(value) and (name != "price" or value > 0)
    if not ok:
        raise DataError(
            f"{name} of {symbol} on {day} is {value!r}, outside {spec.range_text()}; "
            "no snapshot is written with a missing or out-of-range fact"
        )


def compute_snapshots(prices: pd.DataFrame) -> list[Snapshot]:
    """Snapshots for every day from the first one on which every fact is defined.

    `prices` has the columns SYMBOLS, a strictly increasing DatetimeIndex and finite prices > 0.
    """
    values = _check_prices(prices)
    facts = fact_arrays(values)
    stacked = np.stack([facts[name] for name in FACT_NAMES])  # (fact, day, symbol)
    complete = np.isfinite(stacked).all(axis=(0, 2))
    if not complete.any():
        raise DataError(f"{len(values)} trading days are too few to define every fact")
    first = int(np.argmax(complete))
    days = [f"{d:%Y-%m-%d}" for d in prices.index[first:]]
    snapshots: list[Snapshot] = []
    for row, day in enumerate(days, start=first):
        for col, symbol in enumerate(SYMBOLS):
            rounded = {name: _rounded(float(facts[name][row, col])) for name in FACT_NAMES}
            for name, value in rounded.items():
                _check_fact(name, value, day, symbol)
            snapshots.append(Snapshot(ts=f"{day}T{CLOSE_TIME}", symbol=symbol, **rounded))
    return snapshots


def select(snapshots: Iterable[Snapshot], start: date | None, end: date | None) -> list[Snapshot]:
    """The snapshots whose trading day lies in [start, end] (either bound may be open)."""
    lo = start.isoformat() if start is not None else ""
    hi = end.isoformat() if end is not None else "9999-12-31"
    return [s for s in snapshots if lo <= s.ts[:10] <= hi]


def to_json_line(snapshot: Snapshot) -> str:
    return json.dumps(asdict(snapshot), sort_keys=True, separators=(",", ":"), allow_nan=False)


def build_lines(start: date | None = None, end: date | None = None) -> list[str]:
    """The JSON lines for [start, end], computed over the full history so warm-up is identical."""
    return [to_json_line(s) for s in select(compute_snapshots(load_prices()), start, end)]


# --------------------------------------------------------------------------- rail statistics


@dataclass(frozen=True)
class Rail:
    """A rule of the default safety policy, to count how often the history would trip it."""

    action: Action
    rule: str
    fires: Callable[[Snapshot], bool]


def _default_rails() -> tuple[Rail, ...]:
    """The rules of the shipped `policies/safety.yaml`, evaluated with the engine's reference
    semantics, so the statistics follow the policy rather than a copy of its thresholds."""
    policy_set = load_policy_set([str(Path(__file__).resolve().parent.parent / "policies"
                                      / "safety.yaml")])
    rails = []
    for rule in policy_set.of_kind("SafetyPolicy")[0].rules:
        def fires(s: Snapshot, cond: Condition = rule.when) -> bool:
            return holds(cond, {name: getattr(s, name) for name in facts_of(cond)})
        rails.append(Rail(Action(rule.action), rule.when.text().strip("()"), fires))
    return tuple(rails)


DEFAULT_RAILS: Final[tuple[Rail, ...]] = _default_rails()


@dataclass(frozen=True)
class RailTally:
    """How many of a symbol's days in a period tripped each default rail."""

    symbol: str
    period: str  # a year, or "all"
    days: int
    fired: tuple[int, ...]  # one count per rail of DEFAULT_RAILS, in order
    clear: int  # days on which no rail fired


def tally_rails(snapshots: Iterable[Snapshot]) -> list[RailTally]:
    """Per symbol: one tally per year, then one for the whole span."""
    counts: dict[tuple[str, str], list[int]] = {}
    for s in snapshots:
        fired = [int(rail.fires(s)) for rail in DEFAULT_RAILS]
        row = [1, *fired, int(not any(fired))]
        for period in (s.ts[:4], "all"):
            acc = counts.setdefault((s.symbol, period), [0] * len(row))
            for i, v in enumerate(row):
                acc[i] += v
    tallies = []
    for (symbol, period), acc in sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        tallies.append(RailTally(symbol, period, acc[0], tuple(acc[1:-1]), acc[-1]))
    return tallies


def format_tallies(tallies: Sequence[RailTally]) -> str:
    """A plain-text table: percent of days on which each rail fires, per symbol and year."""
    names = [rail.action.value for rail in DEFAULT_RAILS]
    header = f"{'symbol':<7} {'year':<5} {'days':>5} " + " ".join(
        f"{n:>17}" for n in [*names, "clear"]
    )
    lines = [
        "percent of trading days on which each default rail fires",
        *(f"  {rail.action.value}: {rail.rule}" for rail in DEFAULT_RAILS),
        "",
        header,
    ]
    for t in tallies:
        pct = [100.0 * c / t.days for c in (*t.fired, t.clear)]
        cells = " ".join(f"{p:>17.1f}" for p in pct)
        lines.append(f"{t.symbol:<7} {t.period:<5} {t.days:>5} {cells}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line


def _parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m examples.build_facts",
        description=(
            "Build daily fact snapshots (JSON lines) for SP500, NASDAQ and WTI from the price "
            "history bundled with the arch package. Facts are always computed over the full "
            "1999..2018 history, so a date range only selects lines and never changes a value."
        ),
    )
    parser.add_argument(
        "--out",
        default=str(DEFAULT_OUT),
        metavar="PATH",
        help=f"file to write, '-' for standard output (default: {DEFAULT_OUT})",
    )
    parser.add_argument("--start", type=_parse_day, metavar="DATE", help="first day, YYYY-MM-DD")
    parser.add_argument("--end", type=_parse_day, metavar="DATE", help="last day, YYYY-MM-DD")
    parser.add_argument(
        "--stats",
        action="store_true",
        help="print how often each default safety rail fires, per symbol and year",
    )
    return parser


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        # mkstemp makes the file private; the output is an ordinary shared file.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    start: date | None = args.start
    end: date | None = args.end
    if start and end and start > end:
        parser.error(f"--start {start} is after --end {end}")
    try:
        snapshots = select(compute_snapshots(load_prices()), start, end)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not snapshots:
        print(
            f"error: no snapshot between {start or 'the start'} and {end or 'the end'}",
            file=sys.stderr,
        )
        return 1
    text = "".join(to_json_line(s) + "\n" for s in snapshots)
    report: TextIO = sys.stdout
    if args.out == "-":
        sys.stdout.write(text)
        report = sys.stderr
    else:
        out = Path(args.out)
        try:
            _write_atomically(out, text)
        except OSError as exc:
            print(f"error: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        print(
            f"wrote {len(snapshots)} snapshots, {snapshots[0].ts} .. {snapshots[-1].ts}, to {out}",
            file=sys.stderr,
        )
    if args.stats:
        print(format_tallies(tally_rails(snapshots)), file=report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
