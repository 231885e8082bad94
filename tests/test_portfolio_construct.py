"""Targets from forecasts: sizing methods, caps, exclusions and the no-eligible policy."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.portfolio.config import ConstructionConfig, SizingConfig
from engine.portfolio.constructor import build_targets

GOOD = {"price": 100.0, "expected_return": 0.05, "volatility": 0.2, "frs": 0.8}


def frame(rows: dict[str, dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame([{"symbol": s, **GOOD, **facts} for s, facts in rows.items()])


# --- methods and caps ------------------------------------------------------------------


def test_volatility_scaled_weights_hit_the_target_volatility() -> None:
    # raw weight frs/vol; scaled so that sum(w * vol) == 0.15 (perfect correlation bound).
    result = build_targets(
        frame({"LOW": {"volatility": 0.2}, "HIGH": {"volatility": 0.4}}), ConstructionConfig()
    )
    assert not result.hold
    assert dict(result.targets) == pytest.approx({"HIGH": 0.1875, "LOW": 0.375})
    assert result.portfolio_volatility == pytest.approx(0.15)
    assert list(result.targets) == ["HIGH", "LOW"]


def test_frs_tilts_volatility_scaled_weights() -> None:
    result = build_targets(
        frame({"SURE": {"frs": 0.9}, "UNSURE": {"frs": 0.6}}),
        ConstructionConfig(target_volatility=0.1),
    )
    assert dict(result.targets) == pytest.approx({"SURE": 0.3, "UNSURE": 0.2})
    assert result.portfolio_volatility == pytest.approx(0.1)


def test_position_cap_is_not_redistributed() -> None:
    # Uncapped: CALM 0.15*0.8/(0.05*1.6) = 1.5 -> capped at 0.4; the rest is not scaled up,
    # so the book runs below the target volatility rather than above it.
    config = ConstructionConfig(max_position=0.4)
    rows = frame({"CALM": {"volatility": 0.05}, "WILD": {"volatility": 1.0}})
    result = build_targets(rows, config)
    assert result.targets["CALM"] == pytest.approx(0.4)
    assert result.targets["WILD"] == pytest.approx(0.075)
    assert result.portfolio_volatility < 0.15


def test_total_is_scaled_down_to_the_gross_cap() -> None:
    # Five symbols at 0.4 each would be 2.0; cash_buffer 0.02 caps the total at 0.98.
    config = ConstructionConfig(target_volatility=2.0, cash_buffer=0.02, max_gross=1.0)
    result = build_targets(frame({s: {} for s in "ABCDE"}), config)
    assert math.fsum(result.targets.values()) <= 0.98
    assert math.fsum(result.targets.values()) == pytest.approx(0.98)
    assert all(w == pytest.approx(0.196) for w in result.targets.values())


def test_max_gross_below_the_cash_buffer_cap_wins() -> None:
    config = ConstructionConfig(method="equal_weight", max_gross=0.6, cash_buffer=0.02)
    result = build_targets(frame({s: {} for s in "ABCD"}), config)
    assert all(w == pytest.approx(0.15) for w in result.targets.values())


def test_equal_weight_ignores_volatility_and_respects_the_caps() -> None:
    config = ConstructionConfig(method="equal_weight")
    rows = {"A": {"volatility": 0.1}, "B": {"volatility": 0.9}, "C": {}, "D": {}}
    result = build_targets(frame(rows), config)
    assert dict(result.targets) == pytest.approx(dict.fromkeys("ABCD", 0.245))
    capped = build_targets(frame(rows), ConstructionConfig(method="equal_weight", max_position=0.2))
    assert dict(capped.targets) == pytest.approx(dict.fromkeys("ABCD", 0.2))
    single = build_targets(frame({"A": {}}), config)
    assert dict(single.targets) == {"A": 0.4}


# --- eligibility -----------------------------------------------------------------------


def test_thresholds_are_strict_for_return_and_inclusive_for_frs() -> None:
    rows = {
        "AT_FRS": {"frs": 0.6},
        "LOW_FRS": {"frs": 0.59},
        "ZERO_RET": {"expected_return": 0.0},
        "NEG_RET": {"expected_return": -0.02},
    }
    result = build_targets(frame(rows), ConstructionConfig(method="equal_weight"))
    assert result.targets["AT_FRS"] == 0.4
    assert {s: result.targets[s] for s in ("LOW_FRS", "ZERO_RET", "NEG_RET")} == dict.fromkeys(
        ("LOW_FRS", "ZERO_RET", "NEG_RET"), 0.0
    )
    assert set(result.ineligible) == {"LOW_FRS", "ZERO_RET", "NEG_RET"}
    assert "below min_frs" in result.ineligible["LOW_FRS"]
    assert "not above min_expected_return" in result.ineligible["ZERO_RET"]


def test_zero_frs_carries_no_volatility_scaled_weight() -> None:
    result = build_targets(frame({"A": {"frs": 0.0}}), ConstructionConfig(min_frs=0.0))
    assert result.hold and dict(result.targets) == {}
    assert "frs 0" in result.ineligible["A"]


def test_nothing_eligible_holds_by_default() -> None:
    rows = {"A": {"frs": 0.1}, "B": {"expected_return": -0.1}, "C": {"price": math.nan}}
    result = build_targets(frame(rows), ConstructionConfig())
    assert result.hold
    assert dict(result.targets) == {}
    assert set(result.ineligible) == {"A", "B"} and set(result.excluded) == {"C"}


def test_nothing_eligible_goes_to_cash_only_when_configured() -> None:
    rows = {"A": {"frs": 0.1}, "B": {"expected_return": -0.1}, "C": {"price": math.nan}}
    result = build_targets(frame(rows), ConstructionConfig(on_no_eligible="cash"))
    assert not result.hold
    # Explicit zeros for what the forecasts cover; a symbol with bad facts gets no target.
    assert dict(result.targets) == {"A": 0.0, "B": 0.0}


def test_no_rows_at_all_holds() -> None:
    empty = pd.DataFrame(columns=["symbol", "price", "expected_return", "volatility", "frs"])
    assert build_targets(empty, ConstructionConfig()).hold


# --- bad facts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("facts", "reason"),
    [
        ({"price": math.nan}, "price is NaN"),
        ({"price": None}, "price is missing"),
        ({"price": 0.0}, "price must be positive"),
        ({"price": -5.0}, "price must be positive"),
        ({"volatility": math.inf}, "volatility is infinite"),
        ({"volatility": 0.0}, "volatility must be positive"),
        ({"volatility": 35.0}, "volatility 35.0 is outside 0..5"),
        ({"frs": 1.5}, "frs 1.5 is outside 0..1"),
        ({"frs": "0.9"}, "frs has the wrong type (str"),
        ({"expected_return": True}, "expected_return has the wrong type (bool"),
        ({"expected_return": -math.inf}, "expected_return is infinite"),
        ({"expected_return": pd.NA}, "expected_return is missing"),
    ],
)
def test_a_bad_fact_excludes_the_symbol_and_says_why(facts: dict[str, Any], reason: str) -> None:
    rows = pd.DataFrame(
        [{"symbol": "BAD", **GOOD, **facts}, {"symbol": "OK", **GOOD}], dtype=object
    )
    result = build_targets(rows, ConstructionConfig(method="equal_weight"))
    assert reason in result.excluded["BAD"]
    assert "BAD" not in result.targets and "BAD" not in result.ineligible
    assert dict(result.targets) == {"OK": 0.4}


def test_all_bad_facts_of_a_symbol_are_listed() -> None:
    result = build_targets(frame({"BAD": {"price": -1.0, "frs": math.nan}}), ConstructionConfig())
    assert result.excluded["BAD"] == "price must be positive, got -1.0; frs is NaN"


def test_duplicate_symbols_are_excluded_not_guessed() -> None:
    rows = pd.concat([frame({"A": {"frs": 0.7}}), frame({"A": {"frs": 0.9}, "B": {}})])
    result = build_targets(rows, ConstructionConfig(method="equal_weight"))
    assert "appears 2 times" in result.excluded["A"]
    assert dict(result.targets) == {"B": 0.4}


def test_missing_columns_and_bad_symbols_are_errors() -> None:
    with pytest.raises(ValueError, match="lack the column\\(s\\) volatility, frs"):
        build_targets(
            pd.DataFrame({"symbol": ["A"], "price": [1.0], "expected_return": [0.1]}),
            ConstructionConfig(),
        )
    bad_symbol = pd.DataFrame([{"symbol": None, **GOOD}], index=["r7"])
    with pytest.raises(ValueError, match=r"forecasts row 'r7'.*non-empty string"):
        build_targets(bad_symbol, ConstructionConfig())
    with pytest.raises(ValueError, match="reserved"):
        build_targets(frame({"CASH": {}}), ConstructionConfig())
    with pytest.raises(ValueError, match="lack the column\\(s\\) price, expected_return"):
        build_targets([{"symbol": "A"}], ConstructionConfig())
    with pytest.raises(ValueError, match="must be a pandas DataFrame or a list of rows"):
        build_targets({"symbol": "A"}, ConstructionConfig())  # type: ignore[arg-type]


def test_rows_give_the_same_targets_as_a_dataframe() -> None:
    """A cycle passes its rows straight in; a DataFrame of the same rows is the same input."""
    rows = [{"symbol": s, **GOOD, "frs": f} for s, f in (("B", 0.5), ("A", 0.9), ("C", 0.7))]
    rows.append({"symbol": "D", **GOOD, "volatility": 0.0})
    assert build_targets(rows, ConstructionConfig()) == build_targets(
        pd.DataFrame(rows).astype(object), ConstructionConfig())


def test_extra_columns_are_ignored_and_row_order_does_not_matter() -> None:
    rows = frame({"C": {"volatility": 0.3}, "A": {"frs": 0.7}, "B": {"volatility": 0.5}})
    rows["horizon_days"] = [5, 5, 5]
    first = build_targets(rows, ConstructionConfig())
    second = build_targets(rows.iloc[::-1].reset_index(drop=True), ConstructionConfig())
    assert first == second
    assert list(first.targets) == ["A", "B", "C"]


# --- config ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"method": "kelly"}, "method"),
        ({"on_no_eligible": "sell"}, "on_no_eligible"),
        ({"target_volatility": 0.0}, "target_volatility"),
        ({"target_volatility": 15.0}, "target_volatility"),
        ({"min_frs": 1.2}, "min_frs"),
        ({"min_expected_return": math.nan}, "min_expected_return"),
        ({"max_position": 0.0}, "max_position"),
        ({"max_position": 1.5}, "max_position"),
        ({"max_gross": 1.5}, "max_gross"),
        ({"max_gross": 0.0}, "max_gross"),
        ({"cash_buffer": 1.0}, "cash_buffer"),
        ({"cash_buffer": -0.1}, "cash_buffer"),
        ({"max_gross": True}, "max_gross"),
    ],
)
def test_construction_config_refuses_bad_values(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=f"ConstructionConfig.{field}"):
        ConstructionConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"lot_size": 0}, "lot_size"),
        ({"lot_size": 2.5}, "lot_size"),
        ({"lot_size": True}, "lot_size"),
        ({"min_trade_notional": -1.0}, "min_trade_notional"),
        ({"min_trade_notional": math.inf}, "min_trade_notional"),
    ],
)
def test_sizing_config_refuses_bad_values(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=f"SizingConfig.{field}"):
        SizingConfig(**kwargs)


# --- properties ------------------------------------------------------------------------

fact_value = st.one_of(
    st.floats(min_value=-0.5, max_value=1.5),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, None]),
)
forecast_rows = st.lists(
    st.fixed_dictionaries(
        {
            "symbol": st.sampled_from([f"S{i}" for i in range(12)]),
            "price": st.one_of(st.floats(min_value=0.5, max_value=500), fact_value),
            "expected_return": fact_value,
            "volatility": st.one_of(st.floats(min_value=0.01, max_value=1.5), fact_value),
            "frs": fact_value,
        }
    ),
    max_size=12,
)
configs = st.builds(
    ConstructionConfig,
    method=st.sampled_from(["volatility_scaled", "equal_weight"]),
    target_volatility=st.floats(min_value=0.01, max_value=2.0),
    min_expected_return=st.floats(min_value=-0.2, max_value=0.2),
    min_frs=st.floats(min_value=0.0, max_value=1.0),
    max_position=st.floats(min_value=0.01, max_value=1.0),
    max_gross=st.floats(min_value=0.05, max_value=1.0),
    cash_buffer=st.floats(min_value=0.0, max_value=0.5),
    on_no_eligible=st.sampled_from(["hold", "cash"]),
)


@settings(max_examples=200, deadline=None)
@given(rows=forecast_rows, config=configs)
def test_targets_always_respect_the_caps(
    rows: list[dict[str, Any]], config: ConstructionConfig
) -> None:
    columns = ["symbol", "price", "expected_return", "volatility", "frs"]
    forecasts = pd.DataFrame(rows, columns=columns)
    result = build_targets(forecasts, config)
    targets = dict(result.targets)
    assert list(targets) == sorted(targets)
    assert all(0.0 <= w <= config.max_position for w in targets.values())
    assert math.fsum(targets.values()) <= config.gross_cap + 1e-12
    # Every symbol is accounted for: targeted, or excluded with a reason, never both.
    symbols = set(forecasts["symbol"])
    assert set(targets) | set(result.excluded) == symbols or result.hold
    assert not set(targets) & set(result.excluded)
    assert all(result.excluded.values())
    if config.method == "volatility_scaled":
        assert result.portfolio_volatility <= config.target_volatility * (1 + 1e-9)
    positive = [s for s, w in targets.items() if w > 0]
    if result.hold:
        assert targets == {} and config.on_no_eligible == "hold"
    elif not positive:
        # Only the configured liquidation may produce an all-zero target set.
        assert config.on_no_eligible == "cash"
