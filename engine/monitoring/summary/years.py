"""The run year by year: the safety actions of each year and its returns against buy & hold."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.actions import ACTION_NAMES, most_restrictive
from engine.monitoring.summary.records import Cycle
from engine.monitoring.summary.tally import Counts, in_order

#: Years whose market stress every summary points at (dot-com bust, financial crisis, the
#: euro-area debt crisis); every other year is summarised the same way.
NOTABLE_YEARS: tuple[int, ...] = (2001, 2008, 2011)


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


def by_year(cycles: Sequence[Cycle]) -> tuple[YearSummary, ...]:
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
                symbol_days=in_order(symbol_days, ACTION_NAMES),
                book_days=in_order(book_days, ACTION_NAMES),
                book_return=_ratio(end[0], base[0]),
                buy_hold_return=_ratio(end[1], base[1]),
            )
        )
        previous_end = end
    return tuple(years)


def _ratio(end: float, start: float) -> float | None:
    return end / start - 1.0 if start > 0 else None
