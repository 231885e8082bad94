"""The CLI refuses what is wrong instead of guessing: impossible days, unknown record kinds,
rule ids and facts are named, with the nearest known names, and nothing is done."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import RunCli

SNAP = ('{"ts": "2024-01-02T21:00:00Z", "symbol": "SPY", "drift": 0.1, "volatility": 0.1, '
        '"coherence": 0.9, "frs": 0.9, "meta_reliability": 0.9}\n')


def _unboxed(text: str) -> str:
    """A usage error's text without the box and line breaks it is drawn with."""
    return re.sub(r"[\s│]+", " ", text)


def test_an_impossible_day_stops_a_replay_before_it_starts(run_cli: RunCli, db: Path) -> None:
    proc = run_cli("run", "--from", "2008-13-01", "--audit", str(db))
    assert proc.returncode == 2
    assert "'2008-13-01' is not a day of the calendar" in proc.stderr
    assert "--from" in proc.stderr
    assert not db.exists()


@pytest.mark.parametrize("command", [
    ("run",), ("audit", "list"),
    ("sweep", "-p", "policies", "-p", "policies", "-f", "examples/history.jsonl")])
@pytest.mark.parametrize("flag", ["--from", "--to"])
@pytest.mark.parametrize("day", ["2008-13-01", "yesterday", "2008-02-30", "2008-1-5"])
def test_every_command_taking_days_refuses_what_is_not_one(
        invoke_cli: RunCli, db: Path, command: tuple[str, ...], flag: str, day: str) -> None:
    extra = ("--audit", str(db)) if command[0] != "sweep" else ()
    proc = invoke_cli(*command, flag, day, *extra)
    assert proc.returncode == 2, proc.stdout
    assert f"'{day}' is not a day" in _unboxed(proc.stderr)
    assert not db.exists()


def test_a_range_that_ends_before_it_starts_is_refused(invoke_cli: RunCli, store: object,
                                                       db: Path) -> None:
    proc = invoke_cli("audit", "list", "--audit", str(db), "--from", "2009-01-01",
                      "--to", "2008-01-01")
    assert proc.returncode == 2
    assert "--from 2009-01-01 is after --to 2008-01-01" in proc.stderr


def test_an_unknown_kind_lists_the_valid_ones(invoke_cli: RunCli, store: object,
                                              db: Path) -> None:
    proc = invoke_cli("audit", "list", "--audit", str(db), "--kind", "decisoin")
    assert proc.returncode == 2
    assert "unknown record kind 'decisoin'; did you mean decision?" in proc.stderr
    for kind in ("order", "policy_activation", "alert", "trading_state"):
        assert kind in proc.stderr
    assert proc.stdout == ""
    assert invoke_cli("audit", "list", "--audit", str(db), "--kind", "alert").returncode == 0


def test_an_unknown_approval_rule_is_named_with_the_nearest(invoke_cli: RunCli,
                                                            db: Path) -> None:
    proc = invoke_cli("run", "--approve-rules", "large-order-aproval,new-symbol-approval",
                      "--audit", str(db))
    assert proc.returncode == 2
    assert ("unknown approval rule 'large-order-aproval'; did you mean large-order-approval"
            in proc.stderr)
    assert "new-symbol-approval'" not in proc.stderr  # the known one is not blamed
    assert not db.exists()
    swept = invoke_cli("sweep", "-p", "policies", "-p", "policies", "-f",
                       "examples/history.jsonl", "--approve-rules", "large-order-aproval")
    assert swept.returncode == 2
    assert "did you mean large-order-approval" in swept.stderr
    bogus = invoke_cli("run", "--approve-rules", "bogus-rule", "--audit", str(db))
    assert bogus.returncode == 2
    assert "unknown approval rule 'bogus-rule'" in bogus.stderr
    assert "large-order-approval" in bogus.stderr  # the known ones are listed
    assert not db.exists()


def test_eval_names_the_fact_a_misspelt_key_meant(run_cli: RunCli, db: Path) -> None:
    proc = run_cli("eval", "-f", "-", "--audit", str(db), "--clock", "snapshot", stdin=SNAP)
    assert proc.returncode == 0  # the decision fails closed on the missing drift_score
    assert "warning: <stdin>:1: 'drift' is not a fact of the catalogue" in proc.stderr
    assert "did you mean drift_score" in proc.stderr
    assert "fact-missing:drift_score" in proc.stdout


def test_explain_names_an_unknown_csv_column_once(invoke_cli: RunCli, tmp_path: Path) -> None:
    csv = tmp_path / "snaps.csv"
    csv.write_text("ts,symbol,volatilty,drift_score,coherence,frs,meta_reliability\n"
                   "2024-01-02T21:00:00Z,SPY,0.1,0.1,0.9,0.9,0.9\n"
                   "2024-01-02T21:00:00Z,QQQ,0.1,0.1,0.9,0.9,0.9\n", encoding="utf-8")
    proc = invoke_cli("explain", "-f", str(csv), "--clock", "snapshot")
    assert proc.returncode == 0
    warnings = [line for line in proc.stderr.splitlines() if "volatilty" in line]
    assert len(warnings) == 1
    assert f"{csv}:2: 'volatilty'" in warnings[0]
    assert "did you mean volatility" in warnings[0]
    assert "(and 1 more snapshot(s))" in warnings[0]


def test_a_test_case_naming_an_unknown_fact_or_rule_is_an_error(invoke_cli: RunCli,
                                                                tmp_path: Path) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text(
        "cases:\n"
        "  - name: misspelt\n"
        "    facts: {ts: '2024-01-02T21:00:00Z', symbol: SPY, drift: 0.9, volatility: 0.1,"
        " coherence: 0.9, frs: 0.9, meta_reliability: 0.9}\n"
        "    expect: {action: halt, rule: drift-spike-hal}\n"
        "  - name: finding of no fact\n"
        "    facts: {ts: '2024-01-02T21:00:00Z', symbol: SPY}\n"
        "    expect: {action: halt, rule: 'fact-missing:drift'}\n"
        "  - name: fine\n"
        "    facts: {ts: '2024-01-02T21:00:00Z', symbol: SPY}\n"
        "    expect: {action: halt, rule: 'fact-missing:drift_score'}\n", encoding="utf-8")
    proc = invoke_cli("test", str(cases))
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert any(line.startswith(f"{cases}:2:5: case 'misspelt': facts: 'drift' is not a fact")
               and "did you mean drift_score" in line for line in lines)
    assert any("expect.rule: no policy of the set has a rule 'drift-spike-hal'; did you mean "
               "drift-spike-halt" in line for line in lines)
    assert any(f"{cases}:5:5:" in line and "'fact-missing:drift' names no fact" in line
               for line in lines)
    assert not any("case 'fine'" in line for line in lines)
    assert "no case was run" in proc.stderr
    assert "passed" not in proc.stdout
