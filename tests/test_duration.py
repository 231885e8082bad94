"""Durations as policies and the command line write them (max_fact_age, ttl, --since)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.policy.duration import parse_duration


@pytest.mark.parametrize(("text", "delta"), [
    ("1s", timedelta(seconds=1)), ("15m", timedelta(minutes=15)), ("2h", timedelta(hours=2)),
    ("1d", timedelta(days=1)), ("999999999s", timedelta(seconds=999999999)),
])
def test_a_whole_number_and_a_unit_is_a_duration(text: str, delta: timedelta) -> None:
    assert parse_duration(text) == delta


@pytest.mark.parametrize("text", ["0s", "05m", "1000000000s", "1.5h", "1H", "1w", " 1h",
                                  "1h ", "h", "1", "", "-1d", "1d1h"])
def test_anything_else_is_refused_and_quoted(text: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_duration(text)
    assert str(refused.value) == f"not a duration: {text!r}"
