"""Whatever a facts file says is shown as plain text: Rich markup in a symbol is neither read
(`[/]` used to crash the command after its records were written) nor rendered, and control
characters (an ESC sequence, a newline) never reach the terminal raw."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import REPO_ROOT, RunCli

from cli.plain import plain
from engine.audit.store import AuditStore
from engine.execution.paper import init_account
from engine.ids import short
from engine.timeutil import format_utc

ESC = "\x1b"
#: Symbols a hostile or broken upstream feed could send.
HOSTILE = (
    "[/]",
    "[bold red]HALTED[/]",
    "[link=https://evil.example/]click[/link]",
    "\x1b[2J\x1b]0;pwned\x07RED\x1b[31m",
    "FAKE\nline",
)
CLEAN = {"drift_score": 0.1, "volatility": 0.2, "coherence": 0.8, "frs": 0.8,
         "meta_reliability": 0.8, "price": 100.0, "expected_return": 0.05}


def _facts(path: Path, symbols: tuple[str, ...] = HOSTILE) -> Path:
    ts = format_utc(datetime.now(UTC).replace(microsecond=0))
    path.write_text("".join(json.dumps({"ts": ts, "symbol": s, **CLEAN}) + "\n"
                            for s in symbols), encoding="utf-8")
    return path


def _assert_plain(text: str, symbols: tuple[str, ...] = HOSTILE) -> None:
    assert ESC not in text and "\x07" not in text
    for symbol in symbols:
        # Shown, character for character, as the escaped plain text.
        shown = plain(symbol)
        assert shown in text, (symbol, text)
    assert "FAKE\nline" not in text


def test_plain_escapes_controls_and_leaves_text_alone() -> None:
    assert plain("[bold]SPY[/]") == "[bold]SPY[/]"
    assert plain("a\x1b[31mb\nc\u202ed\x9b") == "a\\x1b[31mb\\nc\\u202ed\\x9b"
    assert plain("Zürich ETF") == "Zürich ETF"


def test_eval_explain_and_audit_list_show_markup_and_escapes_as_text(
        tmp_path: Path, run_cli: RunCli) -> None:
    facts = _facts(tmp_path / "facts.jsonl")
    db = tmp_path / "audit.db"
    policies = str(REPO_ROOT / "policies")

    evaluated = run_cli("eval", "--policies", policies, "--facts", str(facts),
                        "--audit", str(db))
    assert evaluated.returncode == 0, evaluated.stderr
    _assert_plain(evaluated.stdout)
    assert evaluated.stdout.count("allow") == len(HOSTILE)

    explained = run_cli("explain", "--policies", policies, "--facts", str(facts))
    assert explained.returncode == 0, explained.stderr
    _assert_plain(explained.stdout)
    for symbol in HOSTILE:
        assert f"{plain(symbol)} " in explained.stdout

    listed = run_cli("audit", "list", "--audit", str(db), "--limit", "50")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("decision") == len(HOSTILE)
    _assert_plain(listed.stdout)

    with AuditStore(db, create=False) as store:
        first = next(store.iter_records("decision"))
    why = run_cli("audit", "why", first.ref, "--audit", str(db))
    assert why.returncode == 0, why.stderr
    assert f"Decision {short(first.ref)} for {HOSTILE[0]} at" in why.stdout


@pytest.mark.parametrize("symbol", ["[/]", "[bold red]X[/]\x1b[31m"])
def test_step_and_approvals_list_show_a_hostile_symbol_as_text(
        tmp_path: Path, run_cli: RunCli, symbol: str) -> None:
    shutil.copytree(REPO_ROOT / "policies", tmp_path / "policies")  # semi-autonomous
    (tmp_path / ".fugger").mkdir()
    init_account(tmp_path / ".fugger" / "paper.db", 200_000)
    _facts(tmp_path / "facts.jsonl", (symbol,))

    stepped = run_cli("step", "--policies", "policies", "--facts", "facts.jsonl",
                      cwd=tmp_path)
    assert stepped.returncode == 0, stepped.stderr
    assert f"  {plain(symbol)}: allow" in stepped.stdout
    _assert_plain(stepped.stdout, (symbol,))

    listed = run_cli("approvals", "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "pending" in listed.stdout
    assert ESC not in listed.stdout and "\x07" not in listed.stdout
    # The queue's order cell may wrap at a space: each word of the symbol is shown as text.
    for word in plain(symbol).split():
        assert word in listed.stdout, (symbol, listed.stdout)
