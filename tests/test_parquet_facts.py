"""Facts from Parquet: the same decisions as the same rows in JSONL, a null cell a missing fact
(never a zero), timestamps written as UTC text, and a file that cannot be read refused with its
position, before anything is recorded."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO_ROOT, RunCli

from engine.audit.store import AuditStore

HISTORY = REPO_ROOT / "examples" / "history.jsonl"
POLICIES = str(REPO_ROOT / "policies")


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    """The shipped history's first 400 snapshots: every rail has days to decide on."""
    with HISTORY.open(encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(400), f, strict=False)]


def _decisions(invoke_cli: RunCli, facts: Path, *extra: str) -> list[dict[str, Any]]:
    proc = invoke_cli("eval", "--policies", POLICIES, "--facts", str(facts), "--clock",
                      "snapshot", "--format", "json", *extra)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def _verdicts(decisions: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(d["ts"], d["symbol"], d["action"], (d["deciding_rule"] or {}).get("rule"),
             sorted(f["rule"] for f in d["fired"])) for d in decisions]


def test_a_parquet_history_decides_as_the_same_rows_in_jsonl(
        tmp_path: Path, rows: list[dict[str, Any]], invoke_cli: RunCli) -> None:
    jsonl = tmp_path / "facts.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    parquet = tmp_path / "facts.parquet"
    # Small row groups: the file is read across several of them.
    pq.write_table(pa.Table.from_pylist(rows), parquet, row_group_size=64)
    expected = _verdicts(_decisions(invoke_cli, jsonl))
    assert len(expected) == 400 and {v[2] for v in expected} > {"allow"}
    assert _verdicts(_decisions(invoke_cli, parquet)) == expected
    # Found by its first bytes too, whatever its name, or named by --input-format.
    unnamed = tmp_path / "facts.bin"
    unnamed.write_bytes(parquet.read_bytes())
    assert _verdicts(_decisions(invoke_cli, unnamed)) == expected
    assert _verdicts(_decisions(invoke_cli, unnamed, "--input-format", "parquet")) == expected


def test_a_null_cell_is_a_missing_fact_and_a_timestamp_is_utc_text(
        tmp_path: Path, invoke_cli: RunCli) -> None:
    at = datetime(2024, 1, 2, 21, tzinfo=UTC)
    table = pa.table({
        "ts": pa.array([at, at], pa.timestamp("us", tz="UTC")),
        "symbol": ["AAA", "BBB"],
        "drift_score": [0.1, None],
        "volatility": [0.1, 0.1],
        "coherence": [0.9, 0.9],
        "frs": [0.9, 0.9],
        "meta_reliability": [0.9, float("nan")],
    })
    facts = tmp_path / "facts.parquet"
    pq.write_table(table, facts)
    calm, gappy = _decisions(invoke_cli, facts, "--audit", str(tmp_path / "audit.db"))
    assert (calm["ts"], calm["symbol"], calm["action"]) == ("2024-01-02T21:00:00Z", "AAA",
                                                            "allow")
    assert gappy["action"] != "allow"
    problems = {(f["fact"], f["problem"]) for f in gappy["findings"]}
    assert ("drift_score", "missing") in problems
    assert ("meta_reliability", "invalid") in problems
    with AuditStore(tmp_path / "audit.db", create=False) as store:
        recorded = [r.body["facts"] for r in store.iter_records("decision")]
    assert "drift_score" not in recorded[1]  # recorded as missing, never as zero


@pytest.mark.parametrize(("table", "message"), [
    (pa.table({"symbol": ["AAA"], "drift_score": [0.1]}),
     "facts.parquet:row 0: a Parquet file of facts needs 'ts' and 'symbol' columns "
     "(found: symbol, drift_score)"),
    (pa.table({"ts": pa.array([datetime(2024, 1, 2, 21)], pa.timestamp("us")),
               "symbol": ["AAA"]}),
     "facts.parquet:row 1: ts is a Parquet timestamp without a time zone"),
])
def test_a_parquet_file_that_cannot_be_trusted_is_refused_with_its_row(
        tmp_path: Path, run_cli: RunCli, table: pa.Table, message: str) -> None:
    pq.write_table(table, tmp_path / "facts.parquet")
    proc = run_cli("eval", "--policies", POLICIES, "--facts", "facts.parquet", "--audit",
                   "audit.db", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith(message), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "audit.db").exists()


def test_a_file_named_parquet_that_is_not_is_refused(tmp_path: Path,
                                                      invoke_cli: RunCli) -> None:
    (tmp_path / "facts.parquet").write_text('{"ts": "2024-01-02T21:00:00Z"}\n',
                                            encoding="utf-8")
    proc = invoke_cli("eval", "--policies", POLICIES, "--facts", "facts.parquet",
                      cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith("facts.parquet: not a readable Parquet file: ")
