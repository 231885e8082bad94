"""Risk figures of an equity curve against a benchmark, computed by empyrical.

Daily returns are simple returns of the recorded equity; a year is 252 trading days; the
risk-free rate is zero (cash earns nothing in a replay); VaR and CVaR are historical, of one
day, at 95%. Drawdown periods are found here: empyrical has no table of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import empyrical as ep
import numpy as np
import pandas as pd

TRADING_DAYS = 252
#: (key, label, is a fraction shown as a percentage)
FIGURES: tuple[tuple[str, str, bool], ...] = (
    ("cagr", "CAGR", True),
    ("volatility", "annualised volatility", True),
    ("sharpe", "Sharpe ratio", False),
    ("sortino", "Sortino ratio", False),
    ("calmar", "Calmar ratio", False),
    ("max_drawdown", "max drawdown", True),
    ("var_95", "VaR 95% (1 day)", True),
    ("cvar_95", "CVaR 95% (1 day)", True),
    ("beta", "beta to buy & hold", False),
    ("alpha", "alpha to buy & hold (annualised)", True),
)


@dataclass(frozen=True)
class Drawdown:
    start: pd.Timestamp
    trough: pd.Timestamp
    #: None while the curve has not regained its peak.
    recovery: pd.Timestamp | None
    depth: float
    #: Trading days from the peak to the recovery (or to the last day).
    days: int


def returns(days: pd.DatetimeIndex, equity: np.ndarray) -> pd.Series:
    """Daily simple returns; a day without a positive equity before it is left out."""
    values = pd.Series(equity, index=days, dtype=float)
    previous = values.shift(1)
    out = values / previous - 1.0
    kept: pd.Series = out[(previous > 0) & np.isfinite(out)]
    return kept


def figures(r: pd.Series, benchmark: pd.Series) -> dict[str, float | None]:
    """Each of FIGURES for returns `r` against `benchmark`; None where undefined."""
    if len(r) < 2:
        return {key: None for key, _, _ in FIGURES}
    aligned = benchmark.reindex(r.index)
    alpha, beta = ep.alpha_beta(r, aligned, annualization=TRADING_DAYS)
    values = {
        "cagr": ep.annual_return(r, annualization=TRADING_DAYS),
        "volatility": ep.annual_volatility(r, annualization=TRADING_DAYS),
        "sharpe": ep.sharpe_ratio(r, annualization=TRADING_DAYS),
        "sortino": ep.sortino_ratio(r, annualization=TRADING_DAYS),
        "calmar": ep.calmar_ratio(r, annualization=TRADING_DAYS),
        "max_drawdown": ep.max_drawdown(r),
        "var_95": ep.value_at_risk(r, cutoff=0.05),
        "cvar_95": ep.conditional_value_at_risk(r, cutoff=0.05),
        "beta": beta,
        "alpha": alpha,
    }
    return {k: _finite(v) for k, v in values.items()}


def monthly(r: pd.Series) -> pd.DataFrame:
    """Compounded return of each month: a row per year, a column per month (1..12)."""
    if r.empty:
        return pd.DataFrame(columns=range(1, 13), dtype=float)
    grouped = ep.aggregate_returns(r, "monthly")
    table: pd.DataFrame = grouped.unstack().reindex(columns=range(1, 13))
    return table


def rolling(r: pd.Series, window: int = TRADING_DAYS) -> tuple[pd.Series, pd.Series]:
    """Rolling annualised volatility and Sharpe ratio over `window` days."""
    if len(r) < window:
        empty = pd.Series(dtype=float)
        return empty, empty
    vol = ep.roll_annual_volatility(r, window=window, annualization=TRADING_DAYS)
    sharpe = ep.roll_sharpe_ratio(r, window=window, annualization=TRADING_DAYS)
    return vol.dropna(), sharpe.dropna()


def worst_drawdowns(days: pd.DatetimeIndex, equity: np.ndarray,
                    count: int = 5) -> list[Drawdown]:
    """The `count` deepest drawdowns that do not overlap, deepest first."""
    values = np.asarray(equity, dtype=float)
    periods: list[Drawdown] = []
    peak_i, trough_i = 0, 0
    in_drawdown = False
    for i in range(1, values.size):
        if not math.isfinite(values[i]):
            continue
        if values[i] >= values[peak_i]:
            if in_drawdown:
                periods.append(_drawdown(days, values, peak_i, trough_i, i))
                in_drawdown = False
            peak_i = trough_i = i
        else:
            in_drawdown = True
            if values[i] < values[trough_i]:
                trough_i = i
    if in_drawdown:
        periods.append(_drawdown(days, values, peak_i, trough_i, None))
    return sorted(periods, key=lambda d: d.depth, reverse=True)[:count]


def _drawdown(days: pd.DatetimeIndex, values: np.ndarray, peak: int, trough: int,
              recovery: int | None) -> Drawdown:
    end = recovery if recovery is not None else values.size - 1
    return Drawdown(days[peak], days[trough], days[recovery] if recovery is not None else None,
                    1.0 - float(values[trough] / values[peak]), end - peak)


def turnover(notional: Sequence[float], mean_equity: float, years: float) -> float | None:
    """Traded value a year over the average equity (one buy and one sell of the whole book
    is a turnover of 2)."""
    if mean_equity <= 0 or years <= 0:
        return None
    return float(sum(notional)) / mean_equity / years


@dataclass(frozen=True)
class RuleEffect:
    rule: str
    days: int
    book: float
    buy_hold: float

    @property
    def saved(self) -> float:
        """Positive when the book did better than buy & hold on the rule's days."""
        return self.book - self.buy_hold


def rule_effects(deciding: Sequence[frozenset[str]], book: pd.Series, buy_hold: pd.Series,
                 days: pd.DatetimeIndex) -> list[RuleEffect]:
    """For each rule, the compounded return of the book and of buy & hold over the days that
    follow the days it decided against allow (a decision at a close governs the next day)."""
    r_book = book.reindex(days)
    r_bh = buy_hold.reindex(days)
    rules = sorted({rule for day in deciding for rule in day})
    effects = []
    for rule in rules:
        after = [i + 1 for i, day in enumerate(deciding) if rule in day and i + 1 < len(days)]
        b = np.nan_to_num(r_book.iloc[after].to_numpy(dtype=float))
        h = np.nan_to_num(r_bh.iloc[after].to_numpy(dtype=float))
        effects.append(RuleEffect(rule, len(after), float(np.prod(1 + b) - 1),
                                  float(np.prod(1 + h) - 1)))
    return effects


def _finite(value: object) -> float | None:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None
