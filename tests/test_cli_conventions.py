"""Conventions users know from other policy tools: --version, completion, validate and facts
in JSON, eval --fail, and `fugger init` making a directory where the README tour runs."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

from engine.catalogue import CATALOGUE
from tests.conftest import CLI_HANG_GUARD_S, REPO_ROOT, RunCli


def test_version_and_completion_script(run_cli: RunCli) -> None:
    version = run_cli("--version")
    assert version.returncode == 0
    assert re.fullmatch(r"fugger \d+\.\d+\.\d+\n", version.stdout)
    # The script is for the shell fugger runs under (typer asks the process tree): here, a
    # bash that stays the parent (a second command keeps bash from exec-ing into fugger).
    completion = subprocess.run(
        ["bash", "-c", f"{shlex.quote(sys.executable)} -m cli.main --show-completion; exit $?"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=CLI_HANG_GUARD_S)
    assert completion.returncode == 0, completion.stderr
    assert "_FUGGER_COMPLETE" in completion.stdout
    assert "complete " in completion.stdout and " fugger" in completion.stdout


def test_validate_defaults_to_policies_and_speaks_json(invoke_cli: RunCli,
                                                       write_policy: object,
                                                       tmp_path: Path) -> None:
    shown = invoke_cli("validate")
    assert shown.returncode == 0
    assert "policies valid" in shown.stdout
    doc = json.loads(invoke_cli("validate", "--format", "json").stdout)
    assert doc["valid"] is True and doc["problems"] == []
    assert {p["name"] for p in doc["policies"]} >= {"core-safety", "core-rotation"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: fuggerbot/v1\nkind: SafetyPolicy\nmetadata: {name: x, "
                   "version: 1.0.0}\nspec:\n  rules:\n    - id: r\n      when: {fact: drift, "
                   "op: '>=', value: 0.8}\n      action: halt\n", encoding="utf-8")
    refused = invoke_cli("validate", str(bad), "--format", "json")
    assert refused.returncode == 1
    found = json.loads(refused.stdout)
    assert found["valid"] is False
    assert any(p["file"] == str(bad) and p["line"] == 7 and "drift_score" in p["message"]
               for p in found["problems"])


def test_eval_fail_exits_1_only_when_a_decision_is_not_allow(invoke_cli: RunCli,
                                                             db: Path) -> None:
    calm = ('{"ts": "2024-01-02T21:00:00Z", "symbol": "SPY", "drift_score": 0.1, '
            '"volatility": 0.1, "coherence": 0.9, "frs": 0.9, "meta_reliability": 0.9}\n')
    args = ("eval", "-f", "-", "--audit", str(db), "--clock", "snapshot", "--fail")
    assert invoke_cli(*args, stdin=calm).returncode == 0
    halted = invoke_cli(*args, stdin=calm + calm.replace('"drift_score": 0.1',
                                                         '"drift_score": 0.9'))
    assert halted.returncode == 1
    assert "1 of 2 decision(s) not allow" in halted.stderr
    assert halted.stdout.count("drift-spike-halt") == 1  # shown and recorded first
    assert halted.stdout.count("allow") == 1
    without = invoke_cli(*args[:-1], stdin=calm.replace('"drift_score": 0.1, ', ''))
    assert without.returncode == 0  # fails closed to halt, but --fail was not asked for
    assert "fact-missing:drift_score" in without.stdout


def test_facts_lists_the_catalogue(invoke_cli: RunCli) -> None:
    rows = [json.loads(line) for line in
            invoke_cli("facts", "--format", "json").stdout.splitlines()]
    assert [r["name"] for r in rows] == list(CATALOGUE)
    drift = next(r for r in rows if r["name"] == "drift_score")
    assert (drift["type"], drift["unit"], drift["range"]) == ("number", "score", "0..1")
    assert drift["meaning"] == CATALOGUE["drift_score"].meaning
    text = invoke_cli("facts").stdout
    assert "volatility" in text and "fraction per year" in text


def test_init_refuses_to_write_over_without_force(invoke_cli: RunCli, tmp_path: Path) -> None:
    assert invoke_cli("init", str(tmp_path / "t")).returncode == 0
    (tmp_path / "t" / "book.yaml").write_text("mine\n", encoding="utf-8")
    again = invoke_cli("init", str(tmp_path / "t"))
    assert again.returncode == 1
    assert "--force" in again.stderr
    assert (tmp_path / "t" / "book.yaml").read_text(encoding="utf-8") == "mine\n"
    assert invoke_cli("init", str(tmp_path / "t"), "--force").returncode == 0
    assert "cash: 1000000" in (tmp_path / "t" / "book.yaml").read_text(encoding="utf-8")


def _tour() -> list[list[str]]:
    """The commands of the README tour, in order, as argument lists."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## A tour of the CLI", 1)[1].split("```sh\n", 1)[1].split("```")[0]
    commands = []
    for line in block.splitlines():
        code = line.split("#", 1)[0]
        for part in re.split(r"&&|;", code):
            words = shlex.split(part)
            if words and words[0] == "fugger":
                commands.append(words[1:])
    return commands


def test_every_command_of_the_readme_tour_runs_in_an_init_directory(
        invoke_cli: RunCli, run_cli: RunCli, tmp_path: Path) -> None:
    tour = _tour()
    assert tour[0] == ["init", "tour"]
    assert len(tour) >= 15
    made = run_cli(*tour[0], cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    here = tmp_path / "tour"
    env = {"FUGGER_ACCESS": "policies/access.yaml"}  # the tour's default, no test override
    ran: set[str] = set()
    for args in tour[1:]:
        if args[0] == "run":
            args = [*args, "--from", "2008-09-01", "--to", "2008-10-31"]  # a short replay
        if "ID" in args:
            args = [_an_id(invoke_cli, here, args[0]) if a == "ID" else a for a in args]
        proc = invoke_cli(*args, cwd=here, env=env)
        if args[:2] == ["approvals", "approve"]:
            # Four eyes: the person whose cycle requested the order cannot approve it.
            assert proc.returncode == 1 and "four eyes" in proc.stderr, proc.stderr
        else:
            assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        ran.add(args[0])
    assert {"validate", "eval", "explain", "audit", "rotate", "step", "approvals", "run",
            "activate", "test", "lint", "diff", "facts", "paper"} <= ran


def _an_id(invoke_cli: RunCli, here: Path, command: str) -> str:
    if command == "audit":
        return invoke_cli("audit", "list", "--kind", "decision", "--ids-only", "--limit", "1",
                          cwd=here).stdout.strip()
    items = invoke_cli("approvals", "list", "--format", "json", cwd=here).stdout.splitlines()
    return str(json.loads(items[0])["item_id"])
