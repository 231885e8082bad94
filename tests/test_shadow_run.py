"""`fugger run --shadow DIR`: a candidate set decides beside the active one; its differences
are recorded and summarised, and never change what the run does."""

from __future__ import annotations

import shutil
from pathlib import Path

from engine.audit.store import AuditStore
from tests.conftest import REPO_ROOT, run_fugger

SLICE = ("--from", "2008-08-01", "--to", "2008-10-31")


def _run(tmp: Path, name: str, *extra: str) -> tuple[str, AuditStore]:
    db = tmp / f"{name}.db"
    proc = run_fugger(["run", "--policies", str(REPO_ROOT / "policies"),
                       "--facts", str(REPO_ROOT / "examples" / "history.jsonl"),
                       "--portfolio", str(REPO_ROOT / "examples" / "portfolio.yaml"),
                       "--audit", str(db), *SLICE, *extra], cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, AuditStore(db, create=False)


def _candidate(tmp: Path) -> Path:
    """The default set with the volatility rail lowered from 0.35 to 0.30."""
    cand = tmp / "candidate"
    shutil.copytree(REPO_ROOT / "policies", cand, ignore=shutil.ignore_patterns("tests"))
    safety = cand / "safety.yaml"
    text = safety.read_text(encoding="utf-8")
    assert "value: 0.35}" in text
    safety.write_text(text.replace("value: 0.35}", "value: 0.30}")
                      .replace("version: 2.1.0", "version: 2.2.0"), encoding="utf-8")
    return cand


def _days(store: AuditStore) -> list[tuple[str, dict[str, str], list[tuple[str, str, int]]]]:
    out = []
    for r in store.iter_records("cycle"):
        b = r.body
        orders = sorted((o["symbol"], o["side"], o["shares"]) for o in b["order_lines"])
        out.append((b["ts"], b["actions"], orders))
    return out


def test_shadow_records_only_the_threshold_change_and_never_acts(tmp_path: Path) -> None:
    out, shadowed = _run(tmp_path, "shadowed", "--shadow", str(_candidate(tmp_path)))
    _, plain = _run(tmp_path, "plain")

    diffs = [r.body for r in shadowed.iter_records("shadow_difference")]
    assert diffs, "lowering the volatility rail must change some decision of autumn 2008"
    facts = {}
    for r in shadowed.iter_records("decision"):
        facts[r.ref] = r.body["facts"]
    for d in diffs:
        vol = facts[d["decision_id"]]["volatility"]
        # Only snapshots between the two thresholds can decide differently, and there the
        # candidate flattens what the active set did not.
        assert 0.30 <= vol < 0.35, d
        assert d["new"] == {"action": "flatten", "rule": "high-volatility-flatten"}, d
        assert d["old"]["action"] != "flatten"
    expected = sum(1 for f in facts.values() if 0.30 <= f["volatility"] < 0.35
                   and f["drift_score"] < 0.8)
    assert len(diffs) == expected
    assert f"{len(diffs)} of {len(facts)} decisions would differ" in out

    # Never acted on: the run with a shadow does exactly what the run without one does.
    assert _days(shadowed) == _days(plain)
    shadowed.close()
    plain.close()
