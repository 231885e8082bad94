"""`fugger diff`: what changed between two policy sets, and which decisions it would change."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from engine.factsource import read_snapshots
from engine.policy.loader import load_policy_set
from engine.tooling.diff import diff_sets, replay
from tests.conftest import RunCli, write_frozen_policies

TS = "2024-01-02T21:00:00Z"

def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def snap(symbol: str, **facts: float) -> dict[str, object]:
    base: dict[str, object] = {"ts": TS, "symbol": symbol, "drift_score": 0.1,
                               "volatility": 0.1, "coherence": 0.9, "frs": 0.9,
                               "meta_reliability": 0.9}
    base.update(facts)
    return base


#: Under coherence <= 0.6 instead of <= 0.5: two allows and one wait become block_new; the
#: rest keep their decision.
SNAPSHOTS = [
    snap("AAA", coherence=0.55),
    snap("BBB", coherence=0.58),
    snap("CCC", coherence=0.3),
    snap("DDD"),
    snap("EEE", coherence=0.58, frs=0.3),
    snap("FFF", coherence=0.6, drift_score=0.95),
    snap("GGG", coherence=0.61),
]
EXPECTED = {"allow -> block_new": 2, "wait_confirmation -> block_new": 1}


def threshold_change(tmp_path: Path, *, bump: bool) -> tuple[Path, Path]:
    old = write_frozen_policies(tmp_path / "old")
    new = write_frozen_policies(tmp_path / "new")
    edit(new / "safety.yaml", 'op: "<=", value: 0.5}', 'op: "<=", value: 0.6}')
    if bump:
        edit(new / "safety.yaml", "version: 2.0.0", "version: 2.1.0")
    return old, new


def write_jsonl(path: Path) -> Path:
    path.write_text("".join(json.dumps(s) + "\n" for s in SNAPSHOTS), encoding="utf-8")
    return path


def test_changed_threshold_without_new_version_fails(tmp_path: Path, run_cli: RunCli) -> None:
    old, new = threshold_change(tmp_path, bump=False)
    proc = run_cli("diff", str(old), str(new))
    assert proc.returncode == 1
    assert "~ policy core-safety (SafetyPolicy): version 2.0.0 (NOT BUMPED)" in proc.stdout
    lines = [line.strip() for line in proc.stdout.splitlines()]
    i = lines.index(f"~ rule coherence-break-block  ({new / 'safety.yaml'}:16:7)")
    assert lines[i + 1:i + 3] == ["when   coherence <= 0.5", "-> coherence <= 0.6"]
    assert (f"error: {new / 'safety.yaml'}:5:12: policy core-safety (SafetyPolicy) changed but "
            "metadata.version is still 2.0.0") in proc.stderr
    assert "1 policy(ies) differ, 1 unchanged" in proc.stdout


def test_comments_and_layout_are_not_a_change(tmp_path: Path) -> None:
    old = write_frozen_policies(tmp_path / "old")
    new = write_frozen_policies(tmp_path / "new")
    edit(new / "safety.yaml", "  fail_closed: halt\n", "  fail_closed: halt   # unchanged\n\n")
    result = diff_sets(load_policy_set([str(old)]), load_policy_set([str(new)]))
    assert result.changed == () and result.errors == ()
    assert {p.status for p in result.policies} == {"unchanged"}


def test_rules_settings_and_policies_added_and_removed(tmp_path: Path) -> None:
    old = write_frozen_policies(tmp_path / "old")
    new = write_frozen_policies(tmp_path / "new")
    (new / "approval.yaml").unlink()
    edit(new / "safety.yaml", "version: 2.0.0", "version: 3.0.0")
    edit(new / "safety.yaml", "max_fact_age: 1d", "max_fact_age: 2h")
    edit(new / "safety.yaml", "action: block_new", "action: flatten")
    edit(new / "safety.yaml", """    - id: drift-spike-halt
      when: {fact: drift_score, op: ">=", value: 0.8}
      action: halt
""", """    - id: drift-extreme-halt
      when: {fact: drift_score, op: ">=", value: 0.9}
      action: halt
""")
    result = diff_sets(load_policy_set([str(old)]), load_policy_set([str(new)]))
    assert result.errors == ()
    by_name = {p.name: p for p in result.changed}
    assert by_name["human-approval"].status == "removed"
    safety = by_name["core-safety"]
    statuses = {r.rule_id: (r.status, r.fields) for r in safety.rules}
    assert statuses["drift-spike-halt"] == ("removed", ())
    assert statuses["drift-extreme-halt"] == ("added", ())
    assert statuses["coherence-break-block"] == ("changed", ("action",))
    assert statuses["high-volatility-flatten"] == ("unchanged", ())
    assert [(s.path, s.old, s.new) for s in safety.settings] == [
        ("spec.max_fact_age", "1d", "2h")]
    back = diff_sets(load_policy_set([str(new)]), load_policy_set([str(old)]))
    assert {p.name: p.status for p in back.changed} == {"core-safety": "changed",
                                                        "human-approval": "added"}


def test_replay_counts_transitions_from_facts(tmp_path: Path, run_cli: RunCli) -> None:
    old, new = threshold_change(tmp_path, bump=True)
    facts = write_jsonl(tmp_path / "facts.jsonl")
    proc = run_cli("diff", str(old), str(new), "--facts", str(facts), "--examples", "2",
                   "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    replayed = doc["replay"]
    assert replayed["compared"] == len(SNAPSHOTS)
    assert replayed["transitions"] == EXPECTED
    assert replayed["changed"] == 3
    assert [(e["symbol"], e["old"], e["new"]) for e in replayed["examples"]] == [
        ("AAA", {"action": "allow", "rule": None},
         {"action": "block_new", "rule": "coherence-break-block"}),
        ("BBB", {"action": "allow", "rule": None},
         {"action": "block_new", "rule": "coherence-break-block"}),
    ]
    text = run_cli("diff", str(old), str(new), "--facts", str(facts), "--examples", "1")
    assert text.returncode == 0, text.stderr
    assert "~ policy core-safety (SafetyPolicy): version 2.0.0 -> 2.1.0" in text.stdout
    assert f"replayed 7 snapshot(s) from {facts}: 3 decision(s) would change" in text.stdout
    assert "  allow -> block_new: 2" in text.stdout
    assert "  wait_confirmation -> block_new: 1" in text.stdout
    assert (f"  AAA {TS}: allow (-) -> block_new (coherence-break-block)  [{facts}:1]"
            ) in text.stdout
    assert "BBB" not in text.stdout


def test_replay_reads_csv(tmp_path: Path) -> None:
    path = tmp_path / "facts.csv"
    columns = list(SNAPSHOTS[0])
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, columns)
        w.writeheader()
        w.writerows(SNAPSHOTS)
    old, new = threshold_change(tmp_path, bump=True)
    summary = replay(load_policy_set([str(old)]), load_policy_set([str(new)]),
                     [(s.where, s.data) for s in read_snapshots(str(path))])
    assert dict(summary.transitions) == EXPECTED


def test_replay_from_an_audit_store_written_by_eval(tmp_path: Path, run_cli: RunCli) -> None:
    old, new = threshold_change(tmp_path, bump=True)
    facts = write_jsonl(tmp_path / "facts.jsonl")
    db = tmp_path / "audit.db"
    ev = run_cli("eval", "--policies", str(old), "--facts", str(facts), "--audit", str(db),
                 "--format", "json", "--clock", "snapshot")
    assert ev.returncode == 0, ev.stderr
    proc = run_cli("diff", str(old), str(new), "--audit", str(db), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    replayed = json.loads(proc.stdout)["replay"]
    assert replayed["compared"] == len(SNAPSHOTS)
    assert replayed["transitions"] == EXPECTED
    assert replayed["examples"][0]["where"].startswith(f"{db}#")


def test_usage_and_input_errors(tmp_path: Path, run_cli: RunCli) -> None:
    old, new = threshold_change(tmp_path, bump=True)
    both = run_cli("diff", str(old), str(new), "--facts", "x", "--audit", "y")
    assert both.returncode == 2
    no_store = run_cli("diff", str(old), str(new), "--audit", str(tmp_path / "none.db"))
    assert no_store.returncode == 1
    assert "no audit store here" in no_store.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"ts": 1}\n{oops\n', encoding="utf-8")
    bad_facts = run_cli("diff", str(old), str(new), "--facts", str(bad))
    assert bad_facts.returncode == 1
    assert f"{bad}:2:" in bad_facts.stderr
