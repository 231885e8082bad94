"""`fugger rotate` as a user runs it: books and facts written to files.

Every scenario runs once, in-process, and each test reads the JSON it printed; one scenario is
run again as a real process, which must print the same bytes, and so is one bad input.
The plan the rotation would make before the rails gate it is computed in-process from the same
book and facts, so each gated line can be traced back to a planned one.
"""

from __future__ import annotations

import atexit
import json
import math
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT, invoke_fugger, run_fugger

from engine.policy.loader import load_policy_set
from engine.portfolio.book import Book
from engine.rotation import RotationEvaluator, rotation_config


def _frozen_policies() -> Path:
    """The shipped policies with the rotation's max_position at 0.4, which the worked
    examples below are computed for: tuning the shipped cap never changes what they check."""
    folder = Path(tempfile.mkdtemp(prefix="fugger-rotate-")) / "policies"
    shutil.copytree(REPO_ROOT / "policies", folder)
    rotation = folder / "rotation.yaml"
    text, n = re.subn(r"max_position: [0-9.]+", "max_position: 0.4",
                      rotation.read_text(encoding="utf-8"))
    assert n == 1
    rotation.write_text(text, encoding="utf-8")
    atexit.register(shutil.rmtree, folder.parent, True)
    return folder


POLICIES = _frozen_policies()
CONFIG = rotation_config(load_policy_set([str(POLICIES)]).of_kind("RotationPolicy")[0])
MIN_TRADE = float(CONFIG.sizing.min_trade_notional)
CASH_BUFFER = CONFIG.construction.cash_buffer
TS = "2024-03-28T21:00:00Z"
NO_ELIGIBLE_REASON = "no symbol qualifies; the book is held as it is (on_no_eligible: hold)"
IN_BAND_REASON = "every weight is inside its band"
# Float noise allowed when a weight or an amount is recomputed from the printed JSON.
EPS = 1e-6

# The deciding rule of each rail in policies/safety.yaml.
RAIL_RULES = {
    "halt": "drift-spike-halt",
    "flatten": "high-volatility-flatten",
    "block_new": "coherence-break-block",
    "wait_confirmation": "low-confidence-wait",
}


def rule_source(rule_id: str) -> str:
    """Where `- id: RULE_ID` sits in the rotation policy, as FILE:LINE:COL of `id`."""
    path = POLICIES / "rotation.yaml"
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip() == f"- id: {rule_id}":
            return f"{path}:{n}:{line.index('id:') + 1}"
    raise LookupError(f"{rule_id} is not a rule of {path}")


def days_before(days: int, ts: str = TS) -> str:
    moment = datetime.fromisoformat(ts) - timedelta(days=days)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def snap(symbol: str, *, price: object = 100.0, er: float = 0.05, vol: float = 0.2,
         frs: float = 0.8, drift: float = 0.1, coherence: float = 0.8, meta: float = 0.8,
         drop: Sequence[str] = ()) -> dict[str, Any]:
    """A snapshot that every rail allows unless told otherwise."""
    s: dict[str, Any] = {"ts": TS, "symbol": symbol, "price": price, "expected_return": er,
                         "volatility": vol, "frs": frs, "drift_score": drift,
                         "coherence": coherence, "meta_reliability": meta}
    for name in drop:
        del s[name]
    return s


@dataclass(frozen=True)
class Scenario:
    cash: float
    positions: Mapping[str, int]
    snaps: Sequence[Mapping[str, Any]]
    last_rebalance: str | None = None

    def book(self) -> Book:
        return Book(self.cash, dict(self.positions), TS, self.last_rebalance)

    def book_yaml(self) -> str:
        lines = [f'as_of: "{TS}"', f"cash: {self.cash!r}"]
        if self.positions:
            lines.append("positions:")
            lines.extend(f"  {s}: {n}" for s, n in self.positions.items())
        else:
            lines.append("positions: {}")
        if self.last_rebalance is not None:
            lines.append(f'last_rebalance: "{self.last_rebalance}"')
        return "\n".join(lines) + "\n"

    def prices(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in self.snaps:
            p = s.get("price")
            if isinstance(p, float) and math.isfinite(p) and p > 0:
                out[str(s["symbol"])] = p
        return out


# Two symbols whose volatility-scaled targets are AAA 0.4 (at max_position) and BBB 0.2333:
# w = 0.15 * (frs / sum of frs) / volatility.
PAIR = [snap("AAA", vol=0.2, frs=0.8), snap("BBB", price=50.0, vol=0.3, frs=0.7)]
# Both at target: AAA 4000 x 100 = 0.4, BBB 4667 x 50 = 0.23335 of 1,000,000.
IN_BAND = {"AAA": 4000, "BBB": 4667}
IN_BAND_CASH = 1_000_000.0 - 400_000.0 - 233_350.0

# The 5/25 worked example: A's target is 0.15 * (0.6 / 3.0) / 0.3 = 0.10, the others
# 0.15 * (0.8 / 3.0) / 0.2 = 0.20. A held at 0.13 is 0.03 off (inside 0.05) but 30% off
# relative to its target (outside 25%).
FOUR = [snap("A", frs=0.6, vol=0.3), snap("B"), snap("C"), snap("D")]

# One symbol per rail, each target unaffected by the rail except A (volatility sizes it):
# targets A 0.06, B..E 0.15.
RAILS = [
    snap("A", vol=0.5),  # flatten
    snap("B", coherence=0.3),  # block_new
    snap("C", meta=0.3),  # wait_confirmation
    snap("D"),  # allow
    snap("E", drift=0.9),  # halt
]
RAIL_OF = {"A": "flatten", "B": "block_new", "C": "wait_confirmation", "D": "allow",
           "E": "halt"}
UNDER = dict.fromkeys("ABCDE", 200)  # 0.02 each: every symbol is bought toward its target
OVER = dict.fromkeys("ABCDE", 1900)  # 0.19 each: every symbol is sold toward its target

# Odd prices and cash, so whole shares, the minimum trade and the cash buffer all bind.
ODD = [
    snap("NASDAQ", price=2869.620117, vol=0.14, frs=0.85),
    snap("SP500", price=1335.420044, vol=0.12, frs=0.9),
    snap("WTI", price=24.72, vol=0.25, frs=0.7),
]

BAD_PRICES: dict[str, dict[str, Any]] = {
    "missing": {"drop": ("price",)},
    "null": {"price": None},
    "zero": {"price": 0.0},
    "negative": {"price": -5.0},
    "string": {"price": "12.5"},
    "nan": {"price": math.nan},
}

SCENARIOS: dict[str, Scenario] = {
    "first_build": Scenario(1_000_000.0, {}, PAIR),
    "weight_breach": Scenario(466_650.0, {"AAA": 3000, "BBB": 4667}, PAIR, days_before(30)),
    "relative_breach": Scenario(270_000.0, {"A": 1300, "B": 2000, "C": 2000, "D": 2000}, FOUR,
                                days_before(30)),
    "in_band_90_days": Scenario(IN_BAND_CASH, IN_BAND, PAIR, days_before(90)),
    "calendar_91_days": Scenario(IN_BAND_CASH, IN_BAND, PAIR, days_before(91)),
    "rails_under": Scenario(900_000.0, UNDER, RAILS, days_before(30)),
    "rails_over": Scenario(50_000.0, OVER, RAILS, days_before(30)),
    "rails_build": Scenario(1_000_000.0, {}, RAILS),
    "all_halt": Scenario(50_000.0, OVER, [snap(s, drift=0.9) for s in "ABCDE"],
                         days_before(30)),
    "no_eligible": Scenario(IN_BAND_CASH, IN_BAND,
                            [snap("AAA", er=0.0), snap("BBB", price=50.0, er=-0.02)],
                            days_before(200)),
    "no_eligible_empty_book": Scenario(1_000_000.0, {},
                                       [snap("AAA", er=-0.01), snap("BBB", frs=0.59)]),
    "odd_build": Scenario(987_654.32, {}, ODD),
    "odd_rebalance": Scenario(20_000.0, {"NASDAQ": 10, "SP500": 500, "WTI": 2000}, ODD,
                              days_before(10)),
    # Same inputs as rails_over, and the same with snapshots and positions listed in reverse.
    "rails_over_again": Scenario(50_000.0, OVER, RAILS, days_before(30)),
    "rails_over_reversed": Scenario(50_000.0, dict(reversed(OVER.items())), RAILS[::-1],
                                    days_before(30)),
}
# The scenario that also runs as a real process.
AS_PROCESS = {"rails_over_again"}
# Held symbols whose price is unusable, one way each, and one of them under flatten, whose exit
# cannot be priced. BBB is not held, so the book is far outside its bands and only the
# missing prices stop the rebalance.
UNPRICED = {f"Z{name.upper()}": bad for name, bad in BAD_PRICES.items()}
UNPRICED_FLATTEN = "ZFLAT"
SCENARIOS["unpriced"] = Scenario(
    600_000.0, {"AAA": 4000, **dict.fromkeys([*UNPRICED, UNPRICED_FLATTEN], 100)},
    [*PAIR, *(snap(sym, **bad) for sym, bad in UNPRICED.items()),
     snap(UNPRICED_FLATTEN, vol=0.5, drop=("price",))],
    days_before(30))


@dataclass(frozen=True)
class Ran:
    scenario: Scenario
    proc: subprocess.CompletedProcess[str]

    @property
    def doc(self) -> dict[str, Any]:
        assert self.proc.returncode == 0, self.proc.stderr
        data = json.loads(self.proc.stdout)
        assert isinstance(data, dict)
        return data


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ran]:
    root = tmp_path_factory.mktemp("rotate")
    commands: list[list[str]] = []
    for name, sc in SCENARIOS.items():
        folder = root / name
        folder.mkdir()
        (folder / "book.yaml").write_text(sc.book_yaml(), encoding="utf-8")
        (folder / "facts.json").write_text(json.dumps(list(sc.snaps), indent=1),
                                           encoding="utf-8")
        commands.append(["rotate", "--policies", str(POLICIES), "--facts",
                         str(folder / "facts.json"), "--portfolio", str(folder / "book.yaml"),
                         "--format", "json", "--clock", "snapshot"])
    # In a separate process, with its own hash seed, so set or dict order cannot hide.
    procs = [run_fugger(args) if name in AS_PROCESS else invoke_fugger(args)
             for name, args in zip(SCENARIOS, commands, strict=True)]
    return {name: Ran(sc, p) for (name, sc), p in zip(SCENARIOS.items(), procs, strict=True)}


@pytest.fixture(scope="module")
def evaluator() -> Iterator[RotationEvaluator]:
    ev = RotationEvaluator(load_policy_set([str(POLICIES)]))
    yield ev
    ev.close()


Key = tuple[str, str, int]


def ungated(evaluator: RotationEvaluator, sc: Scenario) -> list[Key]:
    """The lines the rotation plans before the rails see them."""
    rot = evaluator.rotate(sc.book(), sc.snaps, TS)
    assert rot.plan is not None, rot.trigger.reason
    return [(x.symbol, x.side, x.shares) for x in rot.plan.lines]


def key(line: Mapping[str, Any]) -> Key:
    return (line["symbol"], line["side"], line["shares"])


# --- the rule that triggers, or why none did ------------------------------------------------


def test_first_build_on_an_empty_book(ran: dict[str, Ran]) -> None:
    doc = ran["first_build"].doc
    r = doc["rebalance"]
    assert r["triggered"] is True
    assert r["rule"] == "first-build"
    assert r["reason"] == "The book holds nothing yet (book_empty true)"
    assert r["source"] == rule_source("first-build")
    assert r["facts"]["book_empty"] is True
    assert doc["weights"] == {"CASH": 1.0}
    assert doc["targets"] == pytest.approx({"AAA": 0.4, "BBB": 0.233333}, abs=EPS)
    assert [key(x) for x in doc["plan"]] == [("AAA", "BUY", 4000), ("BBB", "BUY", 4666)]


def test_weight_band_breach(ran: dict[str, Ran]) -> None:
    doc = ran["weight_breach"].doc
    r = doc["rebalance"]
    assert r["triggered"] is True
    assert r["rule"] == "weight-band-breach"
    assert r["source"] == rule_source("weight-band-breach")
    assert "weight-band-breach" in r["fired"]
    assert "first-build" not in r["fired"]
    assert "calendar-rebalance" not in r["fired"]
    assert r["facts"]["weight_drift"] == pytest.approx(0.1, abs=EPS)
    assert r["facts"]["book_empty"] is False
    assert r["facts"]["days_since_rebalance"] == 30
    assert doc["weight_drift"]["AAA"] == pytest.approx(0.1, abs=EPS)
    assert ("AAA", "BUY", 1000) in [key(x) for x in doc["plan"]]


def test_relative_band_breach_five_twenty_five(ran: dict[str, Ran]) -> None:
    """Target 0.10 held at 0.13: inside the absolute band of 5 points, outside the relative
    band of 25%, so only the relative rule fires."""
    doc = ran["relative_breach"].doc
    assert doc["targets"] == pytest.approx({"A": 0.1, "B": 0.2, "C": 0.2, "D": 0.2}, abs=EPS)
    assert doc["weights"]["A"] == pytest.approx(0.13, abs=EPS)
    assert doc["weight_drift"]["A"] == pytest.approx(0.03, abs=EPS)
    assert doc["relative_drift"]["A"] == pytest.approx(0.3, abs=EPS)
    r = doc["rebalance"]
    assert r["triggered"] is True
    assert r["rule"] == "relative-band-breach"
    assert r["source"] == rule_source("relative-band-breach")
    assert r["fired"] == ["relative-band-breach"]
    assert r["facts"]["weight_drift"] == pytest.approx(0.03, abs=EPS)
    assert r["facts"]["relative_drift"] == pytest.approx(0.3, abs=EPS)
    # The plan takes A back to its target although A is inside the absolute band.
    assert [key(x) for x in doc["plan"]] == [("A", "SELL", 300)]


def test_calendar_rebalance_after_a_quarter(ran: dict[str, Ran]) -> None:
    doc = ran["calendar_91_days"].doc
    r = doc["rebalance"]
    assert r["triggered"] is True
    assert r["rule"] == "calendar-rebalance"
    assert r["source"] == rule_source("calendar-rebalance")
    assert r["fired"] == ["calendar-rebalance"]
    assert r["facts"]["days_since_rebalance"] == 91
    assert r["reason"] == ("A quarter has passed since the last rebalance "
                           "(days_since_rebalance 91)")


def test_no_trigger_inside_the_bands(ran: dict[str, Ran]) -> None:
    doc = ran["in_band_90_days"].doc
    r = doc["rebalance"]
    assert r["triggered"] is False
    assert r["rule"] is None
    assert r["fired"] == []
    assert r["reason"] == IN_BAND_REASON
    assert r["facts"]["days_since_rebalance"] == 90
    assert r["facts"]["weight_drift"] <= 0.05
    assert r["facts"]["relative_drift"] <= 0.25
    assert doc["plan"] == []
    assert doc["held"] == []
    assert doc["post_trade"]["cash"] == pytest.approx(IN_BAND_CASH)


def test_no_eligible_forecast_holds_the_book(ran: dict[str, Ran]) -> None:
    for name in ("no_eligible", "no_eligible_empty_book"):
        doc = ran[name].doc
        assert doc["hold"] is True, name
        assert doc["targets"] == {}, name
        assert set(doc["ineligible"]) == {"AAA", "BBB"}, name
        r = doc["rebalance"]
        assert r["triggered"] is False, name
        assert r["rule"] is None, name
        assert r["reason"] == NO_ELIGIBLE_REASON, name
        assert doc["plan"] == [], name
        assert doc["held"] == [], name
    kept = ran["no_eligible"].doc["post_trade"]
    assert kept["cash"] == pytest.approx(IN_BAND_CASH)
    assert set(kept["weights"]) == {"AAA", "BBB", "CASH"}


# --- the rails gate the plan -----------------------------------------------------------------


def check_gated(doc: Mapping[str, Any], sc: Scenario, planned: Sequence[Key]) -> None:
    """Every planned line went out or was held exactly as its symbol's rail says; a line the
    rails held never appears in the plan."""
    safety = doc["safety"]
    plan = [key(x) for x in doc["plan"]]
    held = [key(h) for h in doc["held"]]
    assert not set(plan) & set(held), (plan, held)
    assert doc["unexited"] == {}

    for h in doc["held"]:
        verdict = safety[h["symbol"]]
        assert h["action"] == verdict["action"] != "allow", h
        assert h["rule"] == verdict["rule"] == RAIL_RULES[h["action"]], h
        assert h["side"] == "BUY" or h["action"] == "halt", h

    for line in doc["plan"]:
        action = safety[line["symbol"]]["action"]
        assert action != "halt", line
        if line["side"] == "BUY":
            assert action == "allow", line
        if action == "flatten":
            assert line["side"] == "SELL", line
            assert line["shares"] == sc.positions[line["symbol"]], line
            assert line["reason"] == "flatten: high-volatility-flatten", line

    for sym, side, shares in planned:
        action = safety[sym]["action"]
        if action == "allow" or (action in ("block_new", "wait_confirmation")
                                 and side == "SELL"):
            assert (sym, side, shares) in plan, (sym, side, shares)
        elif action == "flatten" and side == "SELL":
            assert (sym, side, shares) not in held
        else:
            assert (sym, side, shares) in held, (sym, side, shares)

    # A flatten exits the whole position, planned or not, and nothing else of that symbol.
    for sym, verdict in safety.items():
        if verdict["action"] == "flatten":
            lines = [x for x in plan if x[0] == sym]
            have = sc.positions.get(sym, 0)
            assert lines == ([(sym, "SELL", have)] if have > 0 else []), (sym, lines)
    # Nothing but the planned lines and the flatten exits goes out.
    exits = {x for x in plan if safety[x[0]]["action"] == "flatten"}
    assert set(plan) - exits <= set(planned)
    assert len(plan) + len(held) >= len(planned)


@pytest.mark.parametrize("name", ["rails_under", "rails_over", "rails_build"])
def test_rails_gate_the_plan(ran: dict[str, Ran], evaluator: RotationEvaluator,
                             name: str) -> None:
    run = ran[name]
    doc = run.doc
    assert {s: v["action"] for s, v in doc["safety"].items()} == RAIL_OF
    assert {s: v["rule"] for s, v in doc["safety"].items() if v["action"] != "allow"} == {
        s: RAIL_RULES[a] for s, a in RAIL_OF.items() if a != "allow"}
    assert doc["rebalance"]["triggered"] is True
    planned = ungated(evaluator, run.scenario)
    assert {s for s, _, _ in planned} == set("ABCDE")
    check_gated(doc, run.scenario, planned)


def test_rails_under_only_the_allowed_symbol_is_bought(ran: dict[str, Ran]) -> None:
    doc = ran["rails_under"].doc
    assert [key(x) for x in doc["plan"]] == [("A", "SELL", 200), ("D", "BUY", 1300)]
    assert {(h["symbol"], h["side"], h["rule"]) for h in doc["held"]} == {
        ("A", "BUY", "high-volatility-flatten"), ("B", "BUY", "coherence-break-block"),
        ("C", "BUY", "low-confidence-wait"), ("E", "BUY", "drift-spike-halt")}


def test_rails_over_sells_go_out_except_under_halt(ran: dict[str, Ran]) -> None:
    doc = ran["rails_over"].doc
    plan = [key(x) for x in doc["plan"]]
    assert plan == [("A", "SELL", 1900), ("B", "SELL", 400), ("C", "SELL", 400),
                    ("D", "SELL", 400)]
    assert [(h["symbol"], h["side"], h["shares"], h["rule"]) for h in doc["held"]] == [
        ("E", "SELL", 400, "drift-spike-halt")]


def test_halt_everywhere_holds_every_line(ran: dict[str, Ran],
                                          evaluator: RotationEvaluator) -> None:
    run = ran["all_halt"]
    doc = run.doc
    planned = ungated(evaluator, run.scenario)
    assert planned
    assert doc["plan"] == []
    assert sorted(key(h) for h in doc["held"]) == sorted(planned)
    for h in doc["held"]:
        assert (h["action"], h["rule"]) == ("halt", "drift-spike-halt")
    # Nothing moved: the book after the plan is the book before it.
    assert doc["post_trade"]["cash"] == pytest.approx(run.scenario.cash)


def test_held_symbols_without_a_price_are_never_traded(ran: dict[str, Ran]) -> None:
    doc = ran["unpriced"].doc
    r = doc["rebalance"]
    assert r["triggered"] is False
    assert r["rule"] == "fact-invalid:rotation"
    assert "nothing is traded" in r["reason"], r["reason"]
    for sym in [*UNPRICED, UNPRICED_FLATTEN]:
        assert sym in r["reason"], (sym, r["reason"])
        assert sym in doc["excluded"], sym
        assert sym not in doc["targets"], sym
    assert doc["plan"] == []
    assert doc["held"] == []
    assert doc["post_trade"]["cash"] == pytest.approx(600_000.0)


def test_unpriced_symbol_under_flatten_is_reported_not_sold(ran: dict[str, Ran]) -> None:
    doc = ran["unpriced"].doc
    flat = UNPRICED_FLATTEN
    assert doc["safety"][flat] == {"action": "flatten", "rule": "high-volatility-flatten"}
    assert {s for s, v in doc["safety"].items() if v["action"] != "allow"} == {flat}
    assert set(doc["unexited"]) == {flat}
    assert "price" in doc["unexited"][flat]
    assert doc["plan"] == []


# --- what every plan guarantees --------------------------------------------------------------


INVARIANT_SCENARIOS = ["first_build", "weight_breach", "relative_breach", "rails_under",
                       "rails_over", "rails_build", "odd_build", "odd_rebalance"]


@pytest.mark.parametrize("name", INVARIANT_SCENARIOS)
def test_plan_invariants(ran: dict[str, Ran], name: str) -> None:
    run = ran[name]
    doc = run.doc
    sc = run.scenario
    prices = sc.prices()
    plan = doc["plan"]
    assert plan, "the scenario is meant to trade"

    sides = [x["side"] for x in plan]
    assert sides == sorted(sides, key=lambda s: s != "SELL"), "sells come before buys"
    for side in ("SELL", "BUY"):
        symbols = [x["symbol"] for x in plan if x["side"] == side]
        assert symbols == sorted(symbols)
    assert len({(x["symbol"], x["side"]) for x in plan}) == len(plan)

    cash = sc.cash
    shares = dict(sc.positions)
    for x in plan:
        assert type(x["shares"]) is int and x["shares"] > 0, x
        assert x["price"] == prices[x["symbol"]], x
        notional = x["shares"] * x["price"]
        assert x["notional"] == pytest.approx(notional, abs=0.01), x
        if not x["reason"].startswith("flatten:"):
            assert notional >= MIN_TRADE, x
        if x["side"] == "SELL":
            assert x["shares"] <= shares.get(x["symbol"], 0), x
            cash += notional
            shares[x["symbol"]] -= x["shares"]
        else:
            cash -= notional
            shares[x["symbol"]] = shares.get(x["symbol"], 0) + x["shares"]

    equity = sc.cash + math.fsum(n * prices[s] for s, n in sc.positions.items())
    assert cash >= 0
    assert cash >= CASH_BUFFER * equity - EPS
    post = doc["post_trade"]
    assert post["cash"] == pytest.approx(cash, abs=0.01)
    assert math.fsum(post["weights"].values()) == pytest.approx(1.0, abs=1e-5)
    assert post["weights"]["CASH"] >= CASH_BUFFER - 1e-6
    for s, n in shares.items():
        if n > 0:
            assert post["weights"][s] == pytest.approx(n * prices[s] / equity, abs=1e-5)
    assert math.fsum(doc["weights"].values()) == pytest.approx(1.0, abs=1e-5)


# --- determinism -----------------------------------------------------------------------------


def test_same_inputs_give_byte_identical_json(ran: dict[str, Ran]) -> None:
    first = ran["rails_over"].proc
    again = ran["rails_over_again"].proc
    assert first.returncode == again.returncode == 0
    assert first.stdout == again.stdout
    assert first.stdout.endswith("}\n")


def test_input_order_does_not_change_the_json(ran: dict[str, Ran]) -> None:
    assert ran["rails_over_reversed"].proc.stdout == ran["rails_over"].proc.stdout


# --- bad inputs ------------------------------------------------------------------------------

BAD_INPUTS: dict[str, tuple[str, str, str, str]] = {
    # name: (book file name, book text, facts file name, facts text)
    "missing_book": ("nowhere.yaml", "", "facts.json", json.dumps(PAIR)),
    "bad_yaml_book": ("book.yaml", f'as_of: "{TS}"\ncash: [1000, 2\npositions: {{}}\n',
                      "facts.json", json.dumps(PAIR)),
    "bad_json_facts": ("book.yaml", SCENARIOS["first_build"].book_yaml(), "facts.json",
                       '[{"ts": "2024-03-28T21:00:00Z", "symbol": "AAA",}]\n'),
}
# The bad input that also runs as a real process: the exit code and stderr a shell sees.
BAD_AS_PROCESS = {"bad_yaml_book"}
# The file each message must name.
BAD_FILE = {"missing_book": "book", "bad_yaml_book": "book", "bad_json_facts": "facts"}
# What follows the file name: the position where the parser knows it, and the problem.
BAD_TEXT = {"missing_book": ": no such file", "bad_yaml_book": r":\d+:\d+: invalid YAML",
            "bad_json_facts": r":\d+:\d+: invalid JSON"}


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory: pytest.TempPathFactory,
             ) -> dict[str, tuple[Path, Path, subprocess.CompletedProcess[str]]]:
    root = tmp_path_factory.mktemp("bad")
    commands: list[list[str]] = []
    files: list[tuple[Path, Path]] = []
    for name, (book_name, book_text, facts_name, facts_text) in BAD_INPUTS.items():
        folder = root / name
        folder.mkdir()
        book = folder / book_name
        if name != "missing_book":
            book.write_text(book_text, encoding="utf-8")
        facts = folder / facts_name
        facts.write_text(facts_text, encoding="utf-8")
        files.append((book, facts))
        commands.append(["rotate", "--policies", str(POLICIES), "--facts", str(facts),
                         "--portfolio", str(book), "--format", "json", "--clock", "snapshot"])
    procs = [run_fugger(args) if name in BAD_AS_PROCESS else invoke_fugger(args)
             for name, args in zip(BAD_INPUTS, commands, strict=True)]
    return {name: (b, f, p) for name, (b, f), p in zip(BAD_INPUTS, files, procs, strict=True)}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_exits_1_naming_the_file(
        bad_runs: dict[str, tuple[Path, Path, subprocess.CompletedProcess[str]]],
        name: str) -> None:
    book, facts, proc = bad_runs[name]
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    named = book if BAD_FILE[name] == "book" else facts
    pattern = f"^(error: )?{re.escape(str(named))}{BAD_TEXT[name]}"
    assert re.search(pattern, proc.stderr, flags=re.MULTILINE), proc.stderr
    assert "Traceback" not in proc.stderr
