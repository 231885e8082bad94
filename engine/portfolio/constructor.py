"""Target weights from per-symbol forecasts.

Risk model: portfolio volatility is taken as sum(w_i * vol_i), the volatility under perfect
correlation. It is an upper bound for any correlation, so scaling to it never takes more
risk than the target; assuming zero correlation would understate risk when assets move
together, which is when it matters.
"""

from __future__ import annotations

import math
import numbers
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    import pandas as pd

from engine.catalogue import CATALOGUE
from engine.portfolio.book import check_symbol
from engine.portfolio.config import ConstructionConfig

REQUIRED_COLUMNS: tuple[str, ...] = ("symbol", "price", "expected_return", "volatility", "frs")
_FACTS: tuple[str, ...] = REQUIRED_COLUMNS[1:]
#: Facts that size a position by division or by shares: zero is as unusable as negative.
_POSITIVE: frozenset[str] = frozenset({"price", "volatility"})


@dataclass(frozen=True)
class TargetResult:
    """Target weights by symbol (sorted), and why any symbol got none or zero.

    `hold` is True when nothing qualified and the config says to leave the book alone:
    `targets` is then empty and no trade follows. Symbols in `excluded` (bad facts) never
    get a target, so they are never traded on these forecasts; symbols in `ineligible`
    get a target of 0.
    """

    targets: Mapping[str, float]
    hold: bool
    excluded: Mapping[str, str]
    ineligible: Mapping[str, str]
    method: str
    #: sum(w * volatility): the perfect-correlation bound on the targets' volatility.
    portfolio_volatility: float


Forecasts: TypeAlias = "pd.DataFrame | Sequence[Mapping[str, object]]"


def _pandas() -> Any:
    """pandas if something imported it, else None. Only a caller holding a DataFrame (or a
    pandas missing value) can have handed one in, and it imported pandas to make it: a
    replay, which passes rows, never pays for importing pandas."""
    return sys.modules.get("pandas")


def build_targets(forecasts: Forecasts, config: ConstructionConfig) -> TargetResult:
    """Targets from one row per symbol with columns symbol, price, expected_return,
    volatility and frs (other columns are ignored): a DataFrame, or the rows themselves,
    which a cycle passes to skip a DataFrame round trip."""
    facts, excluded = _read_forecasts(forecasts)

    eligible: dict[str, dict[str, float]] = {}
    ineligible: dict[str, str] = {}
    for symbol, f in facts.items():
        reason = _ineligibility(f, config)
        if reason:
            ineligible[symbol] = reason
        else:
            eligible[symbol] = f

    if not eligible:
        if config.on_no_eligible == "hold":
            targets: dict[str, float] = {}
        else:
            targets = dict.fromkeys(facts, 0.0)
        return _result(targets, config.on_no_eligible == "hold", excluded, ineligible, config, {})

    if config.method == "volatility_scaled":
        weights = _volatility_scaled(eligible, config)
    else:
        weights = _equal_weight(eligible, config)
    targets = dict.fromkeys(ineligible, 0.0) | weights
    vols = {s: f["volatility"] for s, f in eligible.items()}
    return _result(targets, False, excluded, ineligible, config, vols)


def _volatility_scaled(
    eligible: Mapping[str, Mapping[str, float]], config: ConstructionConfig
) -> dict[str, float]:
    # w_i = tv * (frs_i / vol_i) / sum(frs): then sum(w_i * vol_i) == tv exactly.
    total_frs = math.fsum(f["frs"] for f in eligible.values())
    # Written as two ratios so a tiny volatility gives inf (then capped), never 0/0.
    raw = {
        s: (f["frs"] / total_frs) * (config.target_volatility / f["volatility"])
        for s, f in eligible.items()
    }
    return _cap(raw, config)


def _equal_weight(
    eligible: Mapping[str, Mapping[str, float]], config: ConstructionConfig
) -> dict[str, float]:
    return _cap(dict.fromkeys(eligible, 1.0 / len(eligible)), config)


def _cap(weights: Mapping[str, float], config: ConstructionConfig) -> dict[str, float]:
    # Cap each position, then scale the total down to the gross cap; never scale up, so the
    # capped weight is not redistributed and volatility stays at or below the target.
    capped = {s: min(w, config.max_position) for s, w in weights.items()}
    total = math.fsum(capped.values())
    limit = config.gross_cap
    if total > limit:
        ratio = limit / total
        capped = {s: w * ratio for s, w in capped.items()}
        # Rounding may leave the sum an ulp above the cap; trim the largest weight.
        over = math.fsum(capped.values()) - limit
        if over > 0:
            top = max(sorted(capped), key=capped.__getitem__)
            capped[top] = max(0.0, capped[top] - over)
    return capped


def _ineligibility(f: Mapping[str, float], config: ConstructionConfig) -> str:
    er, frs = f["expected_return"], f["frs"]
    if not er > config.min_expected_return:
        return (
            f"expected_return {er!r} is not above "
            f"min_expected_return {config.min_expected_return!r}"
        )
    if frs < config.min_frs:
        return f"frs {frs!r} is below min_frs {config.min_frs!r}"
    if config.method == "volatility_scaled" and frs == 0:
        return "frs 0 carries no weight under volatility_scaled"
    return ""


def _result(
    targets: Mapping[str, float],
    hold: bool,
    excluded: Mapping[str, str],
    ineligible: Mapping[str, str],
    config: ConstructionConfig,
    vols: Mapping[str, float],
) -> TargetResult:
    return TargetResult(
        targets=MappingProxyType(dict(sorted(targets.items()))),
        hold=hold,
        excluded=MappingProxyType(dict(sorted(excluded.items()))),
        ineligible=MappingProxyType(dict(sorted(ineligible.items()))),
        method=config.method,
        portfolio_volatility=math.fsum(targets.get(s, 0.0) * v for s, v in vols.items()),
    )


def _read_forecasts(
    forecasts: Forecasts,
) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """Usable facts by symbol (sorted), and the reason each other symbol was excluded."""
    pd_ = _pandas()
    if pd_ is not None and isinstance(forecasts, pd_.DataFrame):
        columns: list[str] = [str(c) for c in forecasts.columns]
        index: list[object] = list(forecasts.index)
    elif isinstance(forecasts, Sequence) and all(isinstance(r, Mapping) for r in forecasts):
        columns = list(REQUIRED_COLUMNS) if not forecasts else [
            c for c in REQUIRED_COLUMNS if all(c in r for r in forecasts)]
        index = list(range(len(forecasts)))
    else:
        raise ValueError("forecasts must be a pandas DataFrame or a list of rows, got "
                         f"{type(forecasts).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ValueError(
            f"forecasts lack the column(s) {', '.join(missing)}; "
            f"required: {', '.join(REQUIRED_COLUMNS)}"
        )
    rows: list[Mapping[str, object]] = (
        [{str(k): v for k, v in r.items()}
         for r in forecasts[list(REQUIRED_COLUMNS)].to_dict("records")]
        if pd_ is not None and isinstance(forecasts, pd_.DataFrame) else list(forecasts))
    symbols: list[str] = []
    for index_value, row in zip(index, rows, strict=True):
        try:
            symbols.append(check_symbol(row["symbol"]))
        except ValueError as exc:
            raise ValueError(f"forecasts row {index_value!r}: {exc}") from None

    counts = Counter(symbols)
    facts: dict[str, dict[str, float]] = {}
    excluded: dict[str, str] = {}
    for symbol, row in zip(symbols, rows, strict=True):
        if counts[symbol] > 1:
            excluded[symbol] = f"appears {counts[symbol]} times in the forecasts; one row expected"
            continue
        values: dict[str, float] = {}
        reasons: list[str] = []
        for name in _FACTS:
            value, reason = _fact(name, row[name])
            if reason:
                reasons.append(reason)
            else:
                values[name] = value
        if reasons:
            excluded[symbol] = "; ".join(reasons)
        else:
            facts[symbol] = values
    return dict(sorted(facts.items())), excluded


def _fact(name: str, value: object) -> tuple[float, str]:
    """The fact as a float and "", or NaN and why it cannot be used."""
    nan = math.nan
    pd_ = _pandas()
    if value is None or (pd_ is not None and (value is pd_.NA or value is pd_.NaT)):
        return nan, f"{name} is missing"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return nan, f"{name} has the wrong type ({type(value).__name__} {value!r})"
    x = float(value)
    if math.isnan(x):
        return nan, f"{name} is NaN"
    if math.isinf(x):
        return nan, f"{name} is infinite"
    if name in _POSITIVE and x <= 0:
        return nan, f"{name} must be positive, got {x!r}"
    spec = CATALOGUE[name]
    if not spec.in_range(x):
        return nan, f"{name} {x!r} is outside {spec.range_text()} ({spec.unit})"
    return x, ""
