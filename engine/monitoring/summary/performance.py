"""The figures of one equity curve: returns, volatility and drawdown."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

TRADING_DAYS_PER_YEAR = 252


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
