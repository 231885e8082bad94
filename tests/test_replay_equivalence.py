"""A replay gives the same run as before its speed-ups: the summary and every day of the
book, apart from ids and times, match a record taken from the replay as it was (one commit
per step, a connection per broker call, a DataFrame per day) over a year of 2008-2009 that
has every rail, approvals, expiries, denials and rebalances in it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO_ROOT, run_fugger

from engine.audit.store import AuditStore

GOLDEN = Path(__file__).parent / "data" / "replay_2008_2009.json"
#: The policy set the record was taken under (the shipped set of that day): the record checks
#: that the replay's speed-ups change nothing, not what today's default policies decide.
POLICIES = Path(__file__).parent / "data" / "replay_2008_2009_policies"
KINDS = ("decision", "order", "alert", "approval_requested", "approval_decided",
         "trading_state", "rebalance", "cycle")


def digest(summary: dict[str, Any], audit: Path) -> dict[str, Any]:
    """What must not change: the summary without ids and times, the number of records of
    each kind, and each day's book, state and order lines."""
    for key in ("run_id", "started_at", "finished_at"):
        summary.pop(key)
    for alert in summary["alerts"]["last"]:
        alert.pop("alert_id")
    with AuditStore(audit, create=False) as store:
        assert store.verify().ok
        days = [[b["ts"][:10], b["equity"], b["cash"], b["positions"], b["trading_state"],
                 [[o["symbol"], o["side"], o["shares"], o["status"], o["rule"]]
                  for o in b["order_lines"]]]
                for b in (r.body for r in store.iter_records("cycle"))]
        return {"summary": summary, "records": {k: store.count(k) for k in KINDS},
                "days": days}


@pytest.mark.parametrize(("engine", "form"), [("durable", "jsonl"), ("vector", "jsonl"),
                                           ("durable", "parquet")])
def test_replay_matches_the_record_of_the_replay_before_its_speed_ups(tmp_path: Path,
                                                                     engine: str,
                                                                     form: str) -> None:
    # --engine vector decides in the vectorised backend, checked against durable-rules, and
    # the history as Parquet is the same history: the run must be the same run.
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    audit = tmp_path / "audit.db"
    facts = Path("examples/history.jsonl")  # as the record names it, from REPO_ROOT
    if form == "parquet":
        with (REPO_ROOT / facts).open(encoding="utf-8") as f:
            rows = [json.loads(line) for line in f]
        facts = tmp_path / "history.parquet"
        pq.write_table(pa.Table.from_pylist(rows), facts, row_group_size=5000)
    proc = run_fugger(["run", "--policies", str(POLICIES), "--facts", str(facts),
                       "--portfolio", "examples/portfolio.yaml", "--audit", str(audit),
                       "--format", "json", "--engine", engine, *golden["args"]], cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr
    got = digest(json.loads(proc.stdout), audit)
    assert got["records"] == golden["records"]
    for day, (new, old) in enumerate(zip(got["days"], golden["days"], strict=True)):
        assert new == old, f"day {day}"
    if form == "parquet":
        assert got["summary"].pop("facts_file") == str(facts)
        golden["summary"].pop("facts_file")
    assert got["summary"] == golden["summary"]
