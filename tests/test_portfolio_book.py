"""The book: loading it from files, and the drift facts derived from it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from engine.catalogue import CATALOGUE
from engine.portfolio.book import CASH, Book, BookError, load_book
from engine.portfolio.drift import (
    NEVER_REBALANCED_DAYS,
    RELATIVE_DRIFT_CAP,
    book_empty,
    current_weights,
    days_since_rebalance,
    relative_drift,
    trigger_facts,
    weight_drift,
)

GOOD_YAML = """\
cash: 2500.5
as_of: "2024-03-01T15:30:00Z"
last_rebalance: "2024-02-01T15:30:00Z"
positions:
  AAPL: 10
  MSFT: 0
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(tmp_path: Path, name: str, text: str) -> str:
    with pytest.raises(BookError) as info:
        load_book(write(tmp_path, name, text))
    return str(info.value)


# --- loading ---------------------------------------------------------------------------


def test_loads_a_yaml_book(tmp_path: Path) -> None:
    book = load_book(write(tmp_path, "book.yaml", GOOD_YAML))
    assert book.cash == 2500.5
    assert dict(book.positions) == {"AAPL": 10, "MSFT": 0}
    assert book.as_of == "2024-03-01T15:30:00Z"
    assert book.last_rebalance == "2024-02-01T15:30:00Z"


def test_loads_a_json_book_with_the_same_content(tmp_path: Path) -> None:
    doc = {
        "cash": 2500.5,
        "as_of": "2024-03-01T15:30:00Z",
        "last_rebalance": "2024-02-01T15:30:00Z",
        "positions": {"AAPL": 10, "MSFT": 0},
    }
    from_json = load_book(write(tmp_path, "book.json", json.dumps(doc)))
    assert from_json == load_book(write(tmp_path, "book.yml", GOOD_YAML))


def test_unquoted_yaml_utc_times_are_accepted(tmp_path: Path) -> None:
    text = "cash: 0\nas_of: 2024-03-01T15:30:00Z\nlast_rebalance: 2024-02-01T15:30:00.250Z\n"
    book = load_book(write(tmp_path, "book.yaml", text))
    assert book.as_of == "2024-03-01T15:30:00Z"
    assert book.last_rebalance == "2024-02-01T15:30:00.250000Z"


def test_positions_and_last_rebalance_are_optional(tmp_path: Path) -> None:
    book = load_book(write(tmp_path, "book.yaml", 'cash: 100\nas_of: "2024-03-01T00:00:00Z"\n'))
    assert dict(book.positions) == {}
    assert book.last_rebalance is None


def test_missing_cash_names_the_file_and_key(tmp_path: Path) -> None:
    message = load_error(tmp_path, "b.yaml", 'as_of: "2024-03-01T00:00:00Z"\npositions: {}\n')
    assert str(tmp_path / "b.yaml") in message
    assert "missing required key 'cash'" in message


def test_negative_cash_points_at_its_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "b.yaml"
    message = load_error(tmp_path, "b.yaml", 'as_of: "2024-03-01T00:00:00Z"\ncash: -5\n')
    assert message == f"{path}:2:7: cash must not be negative, got -5"


def test_fractional_shares_point_at_the_value(tmp_path: Path) -> None:
    text = 'cash: 1\nas_of: "2024-03-01T00:00:00Z"\npositions:\n  AAPL: 10\n  TSLA: 2.5\n'
    message = load_error(tmp_path, "b.yaml", text)
    assert message.startswith(f"{tmp_path / 'b.yaml'}:5:9: ")
    assert "positions.TSLA" in message and "fractional 2.5" in message


def test_negative_shares_are_refused(tmp_path: Path) -> None:
    text = 'cash: 1\nas_of: "2024-03-01T00:00:00Z"\npositions: {AAPL: -3}\n'
    assert "positions.AAPL must not be negative" in load_error(tmp_path, "b.yaml", text)


def test_whole_float_shares_are_whole(tmp_path: Path) -> None:
    doc = {"cash": 1, "as_of": "2024-03-01T00:00:00Z", "positions": {"AAPL": 10.0}}
    book = load_book(write(tmp_path, "b.json", json.dumps(doc)))
    assert book.positions["AAPL"] == 10
    assert isinstance(book.positions["AAPL"], int)


@pytest.mark.parametrize(
    "value",
    [
        '"2024-03-01T00:00:00"',  # no zone
        '"2024-03-01T00:00:00+00:00"',  # UTC but not written with Z
        "2024-03-01T01:00:00+01:00",  # another zone, unquoted
        "2024-03-01",  # a date
        '"2024-02-30T00:00:00Z"',  # no such day
        '"yesterday"',
        "17",
    ],
)
def test_bad_times_are_refused_with_their_position(tmp_path: Path, value: str) -> None:
    message = load_error(tmp_path, "b.yaml", f"cash: 1\nas_of: {value}\n")
    assert message.startswith(f"{tmp_path / 'b.yaml'}:2:8: as_of")
    assert "as_of" in message


def test_last_rebalance_after_as_of_is_refused(tmp_path: Path) -> None:
    text = 'cash: 1\nas_of: "2024-03-01T00:00:00Z"\nlast_rebalance: "2024-03-02T00:00:00Z"\n'
    assert "is after as_of" in load_error(tmp_path, "b.yaml", text)


def test_unknown_keys_are_refused_with_a_suggestion(tmp_path: Path) -> None:
    text = 'cash: 1\nas_of: "2024-03-01T00:00:00Z"\npostions: {AAPL: 1}\n'
    message = load_error(tmp_path, "b.yaml", text)
    assert message.startswith(f"{tmp_path / 'b.yaml'}:3:1: unknown key 'postions'")
    assert "did you mean 'positions'" in message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = "cash: -1\nas_of: nope\npositions: {A: 1.5, B: -2}\nextra: 1\n"
    lines = load_error(tmp_path, "b.yaml", text).splitlines()
    assert len(lines) == 5
    assert all(line.startswith(str(tmp_path / "b.yaml") + ":") for line in lines)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cash: 1\ncash: 2\nas_of: x\n", ":2:1: invalid YAML"),  # duplicate key
        ("cash: [1\nas_of: x\n", "invalid YAML"),
        ("", "the file is empty"),
        ("- 1\n- 2\n", "expected a mapping"),
        ('cash: 1\nas_of: "2024-03-01T00:00:00Z"\npositions: !foo {A: 1}\n', "tagged !foo"),
        ('cash: !!python/object:os.system 1\nas_of: "2024-03-01T00:00:00Z"\n', "cash must be"),
        ('cash: 1\nas_of: "2024-03-01T00:00:00Z"\npositions:\n', "write {} for none"),
        ('cash: 1\nas_of: "2024-03-01T00:00:00Z"\npositions: {7203: 5}\n', "quote it"),
        ('cash: 1\nas_of: "2024-03-01T00:00:00Z"\npositions: {CASH: 5}\n', "reserved"),
        ('cash: true\nas_of: "2024-03-01T00:00:00Z"\n', "cash must be a finite number"),
        ('cash: .nan\nas_of: "2024-03-01T00:00:00Z"\n', "cash must be a finite number"),
    ],
)
def test_bad_yaml_gives_a_clear_error(tmp_path: Path, text: str, expected: str) -> None:
    message = load_error(tmp_path, "b.yaml", text)
    assert message.startswith(str(tmp_path / "b.yaml"))
    assert expected in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"cash": 1, "cash": 2, "as_of": "2024-03-01T00:00:00Z"}', "duplicate key 'cash'"),
        ('{"cash": NaN, "as_of": "2024-03-01T00:00:00Z"}', "NaN is not a number"),
        ('{"cash": 1,\n "as_of": }', ":2:11: invalid JSON"),
        ('{"cash": 1, "as_of": "2024-03-01T00:00:00Z", "positions": {"A": 0.5}}', "fractional"),
    ],
)
def test_bad_json_gives_a_clear_error(tmp_path: Path, text: str, expected: str) -> None:
    message = load_error(tmp_path, "b.json", text)
    assert message.startswith(str(tmp_path / "b.json"))
    assert expected in message


def test_an_alias_bomb_is_named_not_expanded(tmp_path: Path) -> None:
    levels = ["  L0: &l0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"  L{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    text = 'cash: 1\nas_of: "2024-03-01T00:00:00Z"\npositions:\n' + "\n".join(levels) + "\n"
    message = load_error(tmp_path, "b.yaml", text)
    assert "positions.L8 must be a whole number of shares, got a list" in message
    assert len(message) < 2_000


def test_unreadable_files_give_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BookError, match="no such file"):
        load_book(tmp_path / "absent.yaml")
    with pytest.raises(BookError, match=r"unsupported file type '\.toml'"):
        load_book(write(tmp_path, "b.toml", "cash = 1\n"))
    (tmp_path / "latin.yaml").write_bytes(b"cash: 1\nas_of: \xe9\n")
    with pytest.raises(BookError, match="not UTF-8"):
        load_book(tmp_path / "latin.yaml")


def test_a_book_is_checked_when_made() -> None:
    with pytest.raises(ValueError, match="cash must not be negative"):
        Book(cash=-1.0, positions={}, as_of="2024-03-01T00:00:00Z", last_rebalance=None)
    with pytest.raises(ValueError, match="fractional"):
        Book(cash=1.0, positions={"A": 1.5}, as_of="2024-03-01T00:00:00Z")  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="ending in Z"):
        Book(cash=1.0, positions={}, as_of="2024-03-01")
    with pytest.raises(ValueError, match="finite"):
        Book(cash=math.inf, positions={}, as_of="2024-03-01T00:00:00Z")


def test_a_book_cannot_be_changed_through_its_positions() -> None:
    book = Book(cash=1.0, positions={"B": 1, "A": 2}, as_of="2024-03-01T00:00:00Z")
    assert list(book.positions) == ["A", "B"]
    with pytest.raises(TypeError):
        book.positions["A"] = 5  # type: ignore[index]


# --- drift -----------------------------------------------------------------------------

NOW = "2024-03-11T12:00:00Z"


def one_position_book(shares: int, cash: float, last: str | None = None) -> Book:
    return Book(cash=cash, positions={"AAA": shares}, as_of=NOW, last_rebalance=last)


def test_five_twenty_five_inside_both_bands() -> None:
    # Target 0.40, weight 0.44: absolute 0.04 < 0.05 and relative 0.10 < 0.25: no trigger.
    book = one_position_book(44, 5600.0)
    facts = trigger_facts(book, {"AAA": 100.0}, {"AAA": 0.40}, NOW)
    assert facts["weight_drift"] == pytest.approx(0.04)
    assert facts["relative_drift"] == pytest.approx(0.10)
    assert facts["weight_drift"] < 0.05 and facts["relative_drift"] < 0.25


def test_five_twenty_five_relative_band_fires_on_a_small_target() -> None:
    # Target 0.10, weight 0.13: absolute 0.03 stays inside 5%, relative 0.30 breaks 25%.
    book = one_position_book(13, 8700.0)
    facts = trigger_facts(book, {"AAA": 100.0}, {"AAA": 0.10}, NOW)
    assert facts["weight_drift"] == pytest.approx(0.03)
    assert facts["relative_drift"] == pytest.approx(0.30)
    assert facts["weight_drift"] < 0.05 and facts["relative_drift"] > 0.25


def test_five_twenty_five_absolute_band_fires_on_a_large_target() -> None:
    # Target 0.40, weight 0.46: absolute 0.06 breaks 5% while relative 0.15 stays inside 25%.
    book = one_position_book(46, 5400.0)
    facts = trigger_facts(book, {"AAA": 100.0}, {"AAA": 0.40}, NOW)
    assert facts["weight_drift"] == pytest.approx(0.06)
    assert facts["relative_drift"] == pytest.approx(0.15)
    assert facts["weight_drift"] > 0.05 and facts["relative_drift"] < 0.25


def test_weights_include_cash_and_sum_to_one() -> None:
    book = Book(cash=500.0, positions={"A": 10, "B": 5, "Z": 0}, as_of=NOW)
    weights = current_weights(book, {"A": 20.0, "B": 60.0})
    assert weights == pytest.approx({"A": 0.2, "B": 0.3, CASH: 0.5})
    assert math.fsum(weights.values()) == pytest.approx(1.0)


def test_per_symbol_drift_and_the_target_zero_cases() -> None:
    weights = {"HELD_NO_TARGET": 0.3, "HELD_ZERO": 0.2, "UNDER": 0.1, CASH: 0.4}
    targets = {"HELD_ZERO": 0.0, "UNDER": 0.2, "NOT_HELD_ZERO": 0.0, "NEW": 0.1}
    assert weight_drift(weights, targets) == pytest.approx(
        {"HELD_ZERO": 0.2, "NEW": 0.1, "NOT_HELD_ZERO": 0.0, "UNDER": 0.1}
    )
    rel = relative_drift(weights, targets)
    assert rel["HELD_ZERO"] == RELATIVE_DRIFT_CAP
    assert rel["NOT_HELD_ZERO"] == 0.0
    assert rel["NEW"] == pytest.approx(1.0)
    assert rel["UNDER"] == pytest.approx(0.5)
    assert "HELD_NO_TARGET" not in rel


def test_no_targets_mean_no_drift() -> None:
    # A `hold` result has no targets: nothing can be traded, so nothing may trigger.
    book = one_position_book(50, 0.0, last="2024-03-01T00:00:00Z")
    facts = trigger_facts(book, {"AAA": 10.0}, {}, NOW)
    assert facts == {
        "weight_drift": 0.0,
        "relative_drift": 0.0,
        "days_since_rebalance": 10,
        "book_empty": False,
    }


def test_trigger_facts_are_exactly_the_catalogued_facts_with_their_types() -> None:
    book = one_position_book(3, 100.0)
    facts = trigger_facts(book, {"AAA": 50.0}, {"AAA": 0.0, "BBB": 0.3}, NOW)
    assert set(facts) == {"weight_drift", "relative_drift", "days_since_rebalance", "book_empty"}
    assert facts["days_since_rebalance"] == NEVER_REBALANCED_DAYS
    assert type(facts["days_since_rebalance"]) is int
    assert type(facts["book_empty"]) is bool
    assert type(facts["weight_drift"]) is float and type(facts["relative_drift"]) is float
    for name, value in facts.items():
        spec = CATALOGUE[name]
        assert spec.in_range(float(value)), (name, value)
        assert math.isfinite(float(value))


def test_days_since_rebalance_counts_whole_days() -> None:
    book = one_position_book(1, 0.0, last="2024-03-01T13:00:00Z")
    assert days_since_rebalance(book, "2024-03-11T12:59:59Z") == 9
    assert days_since_rebalance(book, "2024-03-11T13:00:00Z") == 10
    assert days_since_rebalance(one_position_book(1, 0.0), NOW) is None
    with pytest.raises(ValueError, match="before last_rebalance"):
        days_since_rebalance(book, "2024-02-01T00:00:00Z")
    with pytest.raises(ValueError, match="now_ts must be a UTC"):
        days_since_rebalance(book, "2024-03-11 12:00")


def test_book_empty_means_no_shares() -> None:
    assert book_empty(Book(cash=10.0, positions={"A": 0}, as_of=NOW))
    assert book_empty(Book(cash=10.0, positions={}, as_of=NOW))
    assert not book_empty(Book(cash=0.0, positions={"A": 1}, as_of=NOW))


@pytest.mark.parametrize("price", [None, math.nan, math.inf, 0.0, -1.0, True, "10"])
def test_drift_fails_closed_without_a_price_for_a_held_symbol(price: object) -> None:
    book = one_position_book(10, 100.0)
    prices = {} if price is None else {"AAA": price}
    with pytest.raises(ValueError, match="AAA"):
        trigger_facts(book, prices, {"AAA": 0.5}, NOW)


@pytest.mark.parametrize("target", [math.nan, -0.1, 1.5, math.inf, "0.3", None])
def test_drift_refuses_bad_targets(target: object) -> None:
    book = one_position_book(10, 100.0)
    with pytest.raises(ValueError, match="target for AAA"):
        trigger_facts(book, {"AAA": 10.0}, {"AAA": target}, NOW)  # type: ignore[dict-item]


def test_a_book_without_equity_has_no_weights() -> None:
    with pytest.raises(ValueError, match="no equity"):
        current_weights(Book(cash=0.0, positions={"A": 0}, as_of=NOW), {})
