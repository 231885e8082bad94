"""The fact builder: the shipped history is reproducible, valid, and free of look-ahead."""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from ruamel.yaml import YAML

from engine.catalogue import CATALOGUE
from examples import build_facts as bf

EXAMPLES = Path(bf.__file__).parent
HISTORY = EXAMPLES / "history.jsonl"
KEYS = {"ts", "symbol", *bf.FACT_NAMES}
TS = re.compile(r"\d{4}-\d{2}-\d{2}T21:00:00Z")


@pytest.fixture(scope="module")
def prices() -> pd.DataFrame:
    return bf.load_prices()


@pytest.fixture(scope="module")
def shipped_lines() -> list[str]:
    return HISTORY.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def rows(shipped_lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in shipped_lines]


def _by_symbol(rows: list[dict[str, Any]], symbol: str, prefix: str = "") -> list[dict[str, Any]]:
    return [r for r in rows if r["symbol"] == symbol and r["ts"].startswith(prefix)]


# ------------------------------------------------------------------ reproducible


def test_full_rebuild_is_byte_identical(tmp_path: Path) -> None:
    out = tmp_path / "history.jsonl"
    assert bf.main(["--out", str(out)]) == 0
    assert out.read_bytes() == HISTORY.read_bytes()


def test_slice_rebuild_gives_the_shipped_lines(tmp_path: Path, shipped_lines: list[str]) -> None:
    out = tmp_path / "2008.jsonl"
    assert bf.main(["--out", str(out), "--start", "2008-01-01", "--end", "2008-12-31"]) == 0
    expected = [line for line in shipped_lines if '"ts":"2008-' in line]
    assert len(expected) == 3 * 253
    assert out.read_text(encoding="utf-8").splitlines() == expected


# ------------------------------------------------------------------ valid lines


def test_every_line_has_all_facts_finite_and_in_range(rows: list[dict[str, Any]]) -> None:
    assert rows
    for row in rows:
        assert set(row) == KEYS, row
        assert row["symbol"] in bf.SYMBOLS
        assert TS.fullmatch(row["ts"]), row["ts"]
        assert datetime.fromisoformat(row["ts"]).utcoffset() == pd.Timedelta(0)
        for name in bf.FACT_NAMES:
            value = row[name]
            assert type(value) is float, (row["ts"], name, value)
            assert math.isfinite(value)
            assert CATALOGUE[name].in_range(value), (row["ts"], row["symbol"], name, value)
            assert round(value, 6) == value
        assert row["price"] > 0


def test_lines_are_compact_with_sorted_keys(shipped_lines: list[str]) -> None:
    for line in shipped_lines[:50]:
        obj = json.loads(line)
        assert line == json.dumps(obj, sort_keys=True, separators=(",", ":"))


def test_ordered_by_ts_then_symbol_and_strictly_increasing_per_symbol(
    rows: list[dict[str, Any]],
) -> None:
    keys = [(r["ts"], r["symbol"]) for r in rows]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    last: dict[str, str] = {}
    per_day: defaultdict[str, set[str]] = defaultdict(set)
    for ts, symbol in keys:
        assert ts > last.get(symbol, ""), (symbol, ts)
        last[symbol] = ts
        per_day[ts].add(symbol)
    assert all(symbols == set(bf.SYMBOLS) for symbols in per_day.values())


def test_warm_up_ends_by_january_2000(rows: list[dict[str, Any]]) -> None:
    assert rows[0]["ts"] <= "2000-01-31T21:00:00Z"
    assert rows[-1]["ts"].startswith("2018-12")


def test_the_book_starts_at_the_first_snapshot(rows: list[dict[str, Any]]) -> None:
    first = rows[0]["ts"]
    book = YAML(typ="safe").load((EXAMPLES / "portfolio.yaml").read_text(encoding="utf-8"))
    assert book == {"as_of": first, "cash": 1000000, "positions": {}, "last_rebalance": None}


# ------------------------------------------------------------------ formulas and episodes


def test_volatility_and_forecast_follow_the_stated_formulas(
    prices: pd.DataFrame, rows: list[dict[str, Any]]
) -> None:
    day = "2008-10-10"
    p = prices.loc[:day, "SP500"]
    logs = [math.log(b / a) for a, b in zip(p.iloc[-21:-1], p.iloc[-20:], strict=True)]
    mean = sum(logs) / 20
    vol = math.sqrt(sum((x - mean) ** 2 for x in logs) / 19) * math.sqrt(252)
    forecast = math.exp(-0.5 * math.log(p.iloc[-1] / p.iloc[-21]) * 20 / 20) - 1
    (row,) = _by_symbol(rows, "SP500", day)
    assert row["volatility"] == pytest.approx(vol, abs=1e-6)
    assert row["expected_return"] == pytest.approx(forecast, abs=1e-6)
    assert row["price"] == pytest.approx(p.iloc[-1], abs=1e-6)


def test_sp500_volatility_reaches_35_percent_in_october_2008(rows: list[dict[str, Any]]) -> None:
    october = _by_symbol(rows, "SP500", "2008-10")
    assert october
    assert sum(r["volatility"] >= 0.35 for r in october) >= 10


def test_the_model_wants_to_buy_the_october_2008_fall_while_volatility_forbids_it(
    rows: list[dict[str, Any]],
) -> None:
    # Eligible to buy under the rotation policy (expected_return > 0, frs >= 0.6) on a day the
    # flatten rail fires: the case the safety rails exist for.
    october = [r for r in rows if r["ts"].startswith("2008-10") and r["symbol"] != "WTI"]
    assert len(october) == 2 * 23
    eligible = [
        r
        for r in october
        if r["expected_return"] > 0 and r["frs"] >= 0.6 and r["volatility"] >= 0.35
    ]
    assert eligible
    flatten = bf.DEFAULT_RAILS[1]
    assert all(flatten.fires(bf.Snapshot(**r)) for r in eligible)


def test_nasdaq_flattens_in_2001_and_something_fires_in_august_2011(
    rows: list[dict[str, Any]],
) -> None:
    assert any(r["volatility"] >= 0.35 for r in _by_symbol(rows, "NASDAQ", "2001"))
    snaps = [bf.Snapshot(**r) for r in rows if r["ts"].startswith("2011-08")]
    assert any(rail.fires(s) for s in snaps for rail in bf.DEFAULT_RAILS)


def test_every_rail_fires_sometimes_and_none_dominates(rows: list[dict[str, Any]]) -> None:
    overall = [t for t in bf.tally_rails(bf.Snapshot(**r) for r in rows) if t.period == "all"]
    assert [t.symbol for t in overall] == list(bf.SYMBOLS)
    for tally in overall:
        for rail, fired in zip(bf.DEFAULT_RAILS, tally.fired, strict=True):
            assert 0 < fired < tally.days / 2, (tally.symbol, rail.rule, fired, tally.days)
    # Drift halts are episodes, not a regime: rare overall, and present in autumn 2008.
    assert all(t.fired[0] < t.days * 0.05 for t in overall)
    for symbol in bf.SYMBOLS:
        assert any(r["drift_score"] >= 0.8 for r in _by_symbol(rows, symbol, "2008-10")), symbol


# ------------------------------------------------------------------ no look-ahead


@pytest.mark.parametrize("day", ["1999-12-15", "2008-09-12", "2016-02-11"])
def test_changing_later_prices_leaves_earlier_facts_alone(prices: pd.DataFrame, day: str) -> None:
    base = bf.compute_snapshots(prices)
    later = prices.index > pd.Timestamp(day)
    rng = np.random.default_rng(7)
    changed = prices.copy()
    # A random walk of 1% daily steps: a different future, still a plausible one.
    walk = np.exp(np.cumsum(rng.normal(0.0, 0.01, (int(later.sum()), 3)), axis=0))
    changed.loc[later] = prices.loc[later].to_numpy() * walk
    moved = bf.compute_snapshots(changed)
    cut = f"{day}T{bf.CLOSE_TIME}"
    before = [s for s in base if s.ts <= cut]
    assert before and before[-1].ts == cut
    assert [s for s in moved if s.ts <= cut] == before
    # The change after `day` did reach the facts, so the comparison above can fail.
    assert [s for s in moved if s.ts > cut] != [s for s in base if s.ts > cut]


def test_facts_of_a_day_need_no_later_rows(prices: pd.DataFrame) -> None:
    full = bf.compute_snapshots(prices)
    truncated = bf.compute_snapshots(prices.loc[:"2011-08-08"])
    assert truncated == full[: len(truncated)]
    assert truncated[-1].ts == "2011-08-08T21:00:00Z"


# ------------------------------------------------------------------ fail closed


@pytest.mark.parametrize("bad", [float("nan"), 0.0, -5.0, float("inf")])
def test_a_bad_price_is_refused_with_its_symbol_and_day(prices: pd.DataFrame, bad: float) -> None:
    broken = prices.copy()
    broken.loc[pd.Timestamp("2005-03-01"), "WTI"] = bad
    with pytest.raises(bf.DataError, match=r"price of WTI on 2005-03-01 is"):
        bf.compute_snapshots(broken)


def test_too_short_a_history_is_refused(prices: pd.DataFrame) -> None:
    with pytest.raises(bf.DataError, match="too few"):
        bf.compute_snapshots(prices.iloc[:150])


def test_wrong_columns_are_refused(prices: pd.DataFrame) -> None:
    with pytest.raises(bf.DataError, match="price columns"):
        bf.compute_snapshots(prices.rename(columns={"WTI": "OIL"}))


# ------------------------------------------------------------------ command line


def test_stdout_output_and_stats_table(
    capsys: pytest.CaptureFixture[str], shipped_lines: list[str]
) -> None:
    code = bf.main(["--out", "-", "--start", "2011-08-01", "--end", "2011-08-31", "--stats"])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.out.splitlines() == [ln for ln in shipped_lines if '"ts":"2011-08-' in ln]
    assert len(captured.out.splitlines()) == 3 * 23
    assert "percent of trading days" in captured.err
    assert re.search(r"SP500\s+2011\s+23\s", captured.err)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--start", "2008-13-01"], "not a date"),
        (["--start", "2009-01-01", "--end", "2008-01-01"], "is after --end"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as exc:
        bf.main(["--out", str(tmp_path / "x.jsonl"), *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()


def test_an_empty_range_is_an_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "x.jsonl"
    assert bf.main(["--out", str(out), "--start", "1999-01-01", "--end", "1999-06-30"]) == 1
    assert "no snapshot between 1999-01-01 and 1999-06-30" in capsys.readouterr().err
    assert not out.exists()
