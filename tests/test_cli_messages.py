"""Messages that say what to do: YAML mistakes in a policy, a reversed operator, a second
paper account, a directory given for a book, and a rebalance reason that shows its facts."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.policy.loader import load_policy_set
from engine.portfolio.drift import NEVER_REBALANCED_DAYS
from engine.portfolio.triggers import RotationTriggers
from tests.conftest import REPO_ROOT, RunCli, WritePolicy

HEAD = ("apiVersion: fuggerbot/v1\nkind: SafetyPolicy\nmetadata: {name: x, version: 1.0.0}\n"
        "spec:\n  rules:\n    - id: r\n")


@pytest.mark.parametrize("when", [
    "      when: {fact: drift_score, op: >=, value: 0.8}\n",
    "      when:\n        fact: drift_score\n        op: >=\n        value: 0.8\n",
])
def test_a_bare_operator_says_to_quote_it(invoke_cli: RunCli, write_policy: WritePolicy,
                                          when: str) -> None:
    path = write_policy(HEAD + when + "      action: halt\n")
    proc = invoke_cli("validate", str(path))
    assert proc.returncode == 1
    assert f"{path}:" in proc.stderr
    assert 'quote the operator: write op: ">="' in proc.stderr


def test_a_bad_indent_names_the_line_to_check(run_cli: RunCli,
                                              write_policy: WritePolicy) -> None:
    path = write_policy(HEAD + "      when: {fact: drift_score, op: \">=\", value: 0.8}\n"
                               "     action: halt\n")
    proc = run_cli("validate", str(path))
    assert proc.returncode == 1
    assert f"{path}:8:6: YAML syntax error" in proc.stderr
    assert "check the indentation at line 8" in proc.stderr


@pytest.mark.parametrize(("written", "meant"), [("=>", ">="), ("=<", "<="), ("=", "==")])
def test_a_reversed_operator_suggests_the_real_one(invoke_cli: RunCli,
                                                   write_policy: WritePolicy,
                                                   written: str, meant: str) -> None:
    path = write_policy(HEAD + f"      when: {{fact: drift_score, op: \"{written}\", "
                               "value: 0.8}\n      action: halt\n")
    proc = invoke_cli("validate", str(path))
    assert proc.returncode == 1
    assert f"'{written}' is not one of:" in proc.stderr
    assert f"did you mean {meant}?" in proc.stderr


def test_a_second_paper_init_says_force(invoke_cli: RunCli, tmp_path: Path, db: Path) -> None:
    broker = tmp_path / "paper.db"
    args = ("paper", "init", "--cash", "1000", "--broker", str(broker), "--audit", str(db))
    assert invoke_cli(*args).returncode == 0
    again = invoke_cli(*args)
    assert again.returncode == 1
    assert "pass --force to replace it" in again.stderr
    assert "overwrite" not in again.stderr
    assert invoke_cli(*args, "--force").returncode == 0


def test_a_directory_given_as_the_book_is_named_as_one(invoke_cli: RunCli) -> None:
    proc = invoke_cli("rotate", "--portfolio", "examples/", "-f", "-", stdin="{}\n")
    assert proc.returncode == 1
    assert "examples/: is a directory; give a book file" in proc.stderr


def test_a_calendar_rebalance_reason_shows_the_days_it_read() -> None:
    ps = load_policy_set([str(REPO_ROOT / "policies" / "rotation.yaml")])
    triggers = RotationTriggers(ps.policies[0])
    try:
        facts = {"weight_drift": 0.0, "relative_drift": 0.0, "book_empty": False}
        never = triggers.evaluate({**facts, "days_since_rebalance": NEVER_REBALANCED_DAYS})
        due = triggers.evaluate({**facts, "days_since_rebalance": 92})
    finally:
        triggers.close()
    assert never.rule == due.rule == "calendar-rebalance"
    assert never.reason.endswith("(no rebalance on record)")
    assert "36500" not in never.reason
    assert due.reason.endswith("(days_since_rebalance 92)")
