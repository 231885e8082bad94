"""Frozen settings for target construction and trade sizing, checked when they are made."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Literal

Method = Literal["volatility_scaled", "equal_weight"]
OnNoEligible = Literal["hold", "cash"]

METHODS: tuple[str, ...] = ("volatility_scaled", "equal_weight")
ON_NO_ELIGIBLE: tuple[str, ...] = ("hold", "cash")


def finite_real(value: object) -> float | None:
    """`value` as a float when it is a finite real number, else None (bool is not a number)."""
    # bool is an int subclass: `max_gross: true` must not read as 1.0.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    x = float(value)
    return x if math.isfinite(x) else None


def _number(owner: str, name: str, value: object) -> float:
    x = finite_real(value)
    if x is None:
        raise ValueError(f"{owner}.{name} must be a finite number, got {value!r}")
    return x


@dataclass(frozen=True)
class ConstructionConfig:
    """How forecasts become target weights, and the limits every plan respects."""

    method: Method = "volatility_scaled"
    target_volatility: float = 0.15
    #: A symbol is eligible when its expected_return is strictly above this.
    min_expected_return: float = 0.0
    #: A symbol is eligible when its frs is at least this.
    min_frs: float = 0.6
    max_position: float = 0.4
    max_gross: float = 1.0
    cash_buffer: float = 0.02
    #: Nothing qualifies: `hold` leaves the book alone, `cash` sells the forecast symbols.
    on_no_eligible: OnNoEligible = "hold"

    def __post_init__(self) -> None:
        who = "ConstructionConfig"
        if self.method not in METHODS:
            raise ValueError(
                f"{who}.method must be one of {', '.join(METHODS)}, got {self.method!r}"
            )
        if self.on_no_eligible not in ON_NO_ELIGIBLE:
            raise ValueError(
                f"{who}.on_no_eligible must be one of {', '.join(ON_NO_ELIGIBLE)}, "
                f"got {self.on_no_eligible!r}"
            )
        tv = _number(who, "target_volatility", self.target_volatility)
        if not 0.0 < tv <= 5.0:
            raise ValueError(
                f"{who}.target_volatility must be in (0, 5] (an annualised fraction: 0.15 is 15%), "
                f"got {tv!r}"
            )
        mer = _number(who, "min_expected_return", self.min_expected_return)
        if not -1.0 <= mer <= 10.0:
            raise ValueError(
                f"{who}.min_expected_return must be in [-1, 10] (a fraction), got {mer!r}"
            )
        frs = _number(who, "min_frs", self.min_frs)
        if not 0.0 <= frs <= 1.0:
            raise ValueError(f"{who}.min_frs must be in [0, 1], got {frs!r}")
        mp = _number(who, "max_position", self.max_position)
        if not 0.0 < mp <= 1.0:
            raise ValueError(f"{who}.max_position must be in (0, 1] (a fraction), got {mp!r}")
        mg = _number(who, "max_gross", self.max_gross)
        if not 0.0 < mg <= 1.0:
            raise ValueError(
                f"{who}.max_gross must be in (0, 1] (long only, no leverage), got {mg!r}"
            )
        cb = _number(who, "cash_buffer", self.cash_buffer)
        if not 0.0 <= cb < 1.0:
            raise ValueError(f"{who}.cash_buffer must be in [0, 1) (a fraction), got {cb!r}")

    @property
    def gross_cap(self) -> float:
        """The largest total weight a target set or a plan may reach."""
        return min(self.max_gross, 1.0 - self.cash_buffer)


@dataclass(frozen=True)
class SizingConfig:
    """How target weights become whole orders."""

    lot_size: int = 1
    min_trade_notional: float = 100.0

    def __post_init__(self) -> None:
        who = "SizingConfig"
        if isinstance(self.lot_size, bool) or not isinstance(self.lot_size, int):
            raise ValueError(f"{who}.lot_size must be a whole number, got {self.lot_size!r}")
        if self.lot_size < 1:
            raise ValueError(f"{who}.lot_size must be at least 1, got {self.lot_size!r}")
        mtn = _number(who, "min_trade_notional", self.min_trade_notional)
        if mtn < 0.0:
            raise ValueError(f"{who}.min_trade_notional must be >= 0, got {mtn!r}")
