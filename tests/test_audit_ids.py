"""Ids and times in the audit commands: one short form for hashes, accepted by show and why as
a unique prefix (an ambiguous one lists the candidates), activations explained, and the
market time beside the recorded time."""

from __future__ import annotations

import json
from pathlib import Path

from engine.audit.store import AuditStore
from engine.ids import SHORT_HASH
from tests.conftest import REPO_ROOT, RunCli

SNAPS = "".join(
    json.dumps({"ts": "2024-01-02T21:00:00Z", "symbol": s, "drift_score": 0.1,
                "volatility": 0.1, "coherence": 0.9, "frs": 0.9, "meta_reliability": 0.9}) + "\n"
    for s in ("SPY", "QQQ", "IWM"))


def _evaluated(invoke_cli: RunCli, db: Path) -> None:
    proc = invoke_cli("eval", "-f", "-", "--audit", str(db), "--clock", "snapshot",
                      "--format", "json", stdin=SNAPS)
    assert proc.returncode == 0, proc.stderr


def test_show_and_why_take_a_unique_prefix_and_list_an_ambiguous_one(
        invoke_cli: RunCli, db: Path) -> None:
    _evaluated(invoke_cli, db)
    with AuditStore(db, create=False) as store:
        decisions = [r.ref for r in store.iter_records("decision")]
        policy_hash = next(store.iter_records("policy_activation")).ref
    # Ids start with their time: the three made together share a start.
    shared = decisions[0][:1]
    assert len(decisions) == 3 and all(d.startswith(shared) for d in decisions)
    ambiguous = invoke_cli("audit", "show", shared, "--audit", str(db))
    assert ambiguous.returncode == 2
    assert "more than one id" in ambiguous.stderr
    for d in decisions:
        assert d in ambiguous.stderr
    assert ambiguous.stdout == ""
    short = policy_hash[:SHORT_HASH]
    shown = invoke_cli("audit", "show", short, "--audit", str(db))
    assert shown.returncode == 0
    assert json.loads(shown.stdout)["ref"] == policy_hash
    why = invoke_cli("audit", "why", short, "--audit", str(db))
    assert why.returncode == 0, why.stderr
    assert f"policy_activation of set {short} at " in why.stdout
    assert "SafetyPolicy core-safety" in why.stdout
    assert "policies/safety.yaml" in why.stdout
    missing = invoke_cli("audit", "why", "zzzz", "--audit", str(db))
    assert missing.returncode == 1 and "no record with id 'zzzz'" in missing.stderr


def test_list_shows_market_and_recorded_time_and_short_hashes(run_cli: RunCli,
                                                              invoke_cli: RunCli,
                                                              db: Path) -> None:
    _evaluated(invoke_cli, db)
    with AuditStore(db, create=False) as store:
        policy_hash = next(store.iter_records("policy_activation")).ref
    listed = run_cli("audit", "list", "--audit", str(db), env={"COLUMNS": "200"})
    assert listed.returncode == 0
    header = next(line for line in listed.stdout.splitlines() if "market time" in line)
    assert "recorded" in header
    assert policy_hash[:SHORT_HASH] in listed.stdout
    assert policy_hash not in listed.stdout
    assert listed.stdout.count("2024-01-02T21:00:00Z") == 3  # the snapshots' market time
    rows = [json.loads(line) for line in invoke_cli(
        "audit", "list", "--audit", str(db), "--kind", "decision", "--format", "json",
        "--from", "2024-01-02", "--to", "2024-01-02").stdout.splitlines()]
    assert len(rows) == 3
    assert all(r["market_time"] == "2024-01-02T21:00:00Z" and r["recorded"] > "2025"
               for r in rows)
    assert invoke_cli("audit", "list", "--audit", str(db), "--kind", "decision",
                      "--from", "2024-01-03", "--ids-only").stdout == ""
    helped = invoke_cli("audit", "list", "--help", env={"COLUMNS": "200"})
    assert "market time" in helped.stdout


def test_hashes_are_shown_at_one_length(invoke_cli: RunCli) -> None:
    validated = invoke_cli("validate", str(REPO_ROOT / "policies"))
    doc = json.loads(invoke_cli("validate", str(REPO_ROOT / "policies"),
                                "--format", "json").stdout)
    assert f"policy set {doc['policy_set'][:SHORT_HASH]}:" in validated.stdout


def test_ids_are_shown_at_the_hashes_length_and_each_short_form_names_one_record(
        run_cli: RunCli, invoke_cli: RunCli, db: Path) -> None:
    """Decisions made in one millisecond still differ within their short form."""
    _evaluated(invoke_cli, db)
    with AuditStore(db, create=False) as store:
        decisions = {r.ref: r.body["decision"]["symbol"] for r in store.iter_records("decision")}
    assert len({d[:SHORT_HASH] for d in decisions}) == 3
    listed = run_cli("audit", "list", "--audit", str(db), "--kind", "decision",
                     env={"COLUMNS": "200"})
    assert listed.returncode == 0, listed.stderr
    for decision, symbol in decisions.items():
        assert decision[:SHORT_HASH] in listed.stdout and decision not in listed.stdout
        shown = invoke_cli("audit", "show", decision[:SHORT_HASH], "--audit", str(db))
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["body"]["decision"]["symbol"] == symbol
        why = invoke_cli("audit", "why", decision[:SHORT_HASH], "--audit", str(db))
        assert why.stdout.startswith(f"Decision {decision[:SHORT_HASH]} for {symbol} at ")
