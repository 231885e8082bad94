"""Hostile facts through the real `fugger` command: every input is refused cleanly (exit 1,
file and line, nothing recorded) or decided fail-closed, never crashes, never read
ambiguously, and memory stays flat however long the input is."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import CLI_HANG_GUARD_S, REPO_ROOT, RunCli

from engine.audit.store import AuditStore
from engine.timeutil import format_utc

# Fresh on the wall clock live commands use.
TS = format_utc(datetime.now(UTC).replace(microsecond=0))
CALM: dict[str, Any] = {"ts": TS, "symbol": "SP500", "drift_score": 0.1, "volatility": 0.12,
                        "coherence": 0.9, "frs": 0.9, "meta_reliability": 0.9}
CSV_HEAD = "ts,symbol,drift_score,volatility,coherence,frs,meta_reliability\n"
# More than one batch of eval's records (500): a failure late in the file must not leave the
# first batches recorded.
GOOD_LINES = 600


def _decisions(db: Path) -> int:
    if not db.exists():
        return 0
    with AuditStore(db, create=False) as store:
        return store.count("decision")


def _eval(run_cli: RunCli, cwd: Path, facts: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli("eval", "--policies", str(REPO_ROOT / "policies"), "--facts", facts,
                   "--audit", "audit.db", "--format", "json", *extra, cwd=cwd)


def _jsonl(*snaps: dict[str, Any] | str) -> str:
    """JSON lines; characters beyond ASCII are written as themselves, not escaped."""
    return "".join((s if isinstance(s, str) else json.dumps(s, ensure_ascii=False)) + "\n"
                   for s in snaps)


# --- defect 8: input that crashed is refused, and nothing of the batch is recorded -------

LATE_BAD = [
    pytest.param("facts.jsonl", _jsonl(*[CALM] * GOOD_LINES, json.dumps(CALM)[:-1]
                                       + ', "note": "\\ud800"}'),
                 f"facts.jsonl:{GOOD_LINES + 1}: ", "surrogate", id="lone-surrogate"),
    pytest.param("facts.jsonl", _jsonl(*[CALM] * GOOD_LINES, json.dumps(CALM).replace(
        '"drift_score": 0.1', '"drift_score": ' + "1" * 5001)),
                 f"facts.jsonl:{GOOD_LINES + 1}: ", "integer of 5001 digits", id="huge-integer"),
    pytest.param("facts.csv", CSV_HEAD + f"{TS},SP500,0.1,0.12,0.9,0.9,0.9\n" * GOOD_LINES
                 + f"{TS},SP500,0.1,0.12,0.9,0.9,{'9' * 140_000}\n",
                 f"facts.csv:{GOOD_LINES + 2}: ", "larger than 64 KiB", id="csv-long-field"),
]


@pytest.mark.parametrize(("name", "text", "where", "why"), LATE_BAD)
def test_input_that_crashed_is_refused_whole(tmp_path: Path, run_cli: RunCli, name: str,
                                             text: str, where: str, why: str) -> None:
    (tmp_path / name).write_text(text, encoding="utf-8")
    proc = _eval(run_cli, tmp_path, name)
    assert proc.returncode == 1, proc.stderr
    first = proc.stderr.splitlines()[0]
    assert first.startswith(where), proc.stderr
    assert why in first
    assert "nothing was evaluated" in proc.stderr
    assert proc.stdout == ""
    assert _decisions(tmp_path / "audit.db") == 0


# --- defect 10: ambiguous input is refused or read as invalid, never guessed --------------

def test_duplicate_keys_in_a_snapshot_are_invalid(tmp_path: Path, run_cli: RunCli) -> None:
    plain = json.dumps(CALM).replace('"drift_score": 0.1',
                                     '"drift_score": 0.9, "drift_score": 0.1')
    dated = json.dumps({**CALM, "symbol": "NASDAQ"}).replace(
        '"drift_score": 0.1', '"drift_score": {"value": 0.9, "value": 0.1}')
    (tmp_path / "facts.jsonl").write_text(_jsonl(plain, dated), encoding="utf-8")
    proc = _eval(run_cli, tmp_path, "facts.jsonl")
    assert proc.returncode == 0, proc.stderr
    docs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [d["action"] for d in docs] == ["halt", "halt"]
    for d in docs:
        assert d["deciding_rule"]["rule"] == "fact-invalid:drift_score"
        assert "given 2 times (0.9, 0.1)" in d["findings"][0]["detail"]


def test_lines_split_at_newline_only(tmp_path: Path, run_cli: RunCli) -> None:
    (tmp_path / "facts.jsonl").write_text(_jsonl({**CALM, "note": "one\u2028line\u2029"}),
                                          encoding="utf-8")
    proc = _eval(run_cli, tmp_path, "facts.jsonl")
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["action"] for line in proc.stdout.splitlines()] == ["allow"]
    with AuditStore(tmp_path / "audit.db", create=False) as store:
        (record,) = store.iter_records("decision")
    assert record.body["facts"]["note"] == "one\u2028line\u2029"
    assert record.body["source"] == "facts.jsonl:1"


@pytest.mark.parametrize("written", ["\u0660.\u0661", "\uff10.\uff11", "0_1", "0.1_0"])
def test_csv_numbers_need_ascii_digits(tmp_path: Path, run_cli: RunCli, written: str) -> None:
    (tmp_path / "facts.csv").write_text(CSV_HEAD + f"{TS},SP500,{written},0.12,0.9,0.9,0.9\n",
                                        encoding="utf-8")
    proc = _eval(run_cli, tmp_path, "facts.csv")
    assert proc.returncode == 0, proc.stderr
    (doc,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert doc["action"] == "halt"
    assert doc["deciding_rule"]["rule"] == "fact-invalid:drift_score"


# --- defect 11: bounded snapshots, flat memory, replay in time order ----------------------

def test_a_snapshot_over_the_size_limit_is_refused(tmp_path: Path, run_cli: RunCli) -> None:
    big = {**CALM, "note": "x" * 70_000}
    (tmp_path / "facts.jsonl").write_text(_jsonl(CALM, big), encoding="utf-8")
    proc = _eval(run_cli, tmp_path, "facts.jsonl")
    assert proc.returncode == 1
    assert proc.stderr.startswith("facts.jsonl:2: snapshot larger than 64 KiB")
    assert "--max-snapshot-bytes" in proc.stderr
    assert _decisions(tmp_path / "audit.db") == 0
    proc = _eval(run_cli, tmp_path, "facts.jsonl", "--max-snapshot-bytes", "100000")
    assert proc.returncode == 0, proc.stderr
    assert _decisions(tmp_path / "audit.db") == 2


# Runs `fugger ARGS` in a process of its own and writes the peak of the memory Python
# allocated while the command ran (tracemalloc, started once the command line is imported) to
# the file named first. Resident size is no measure here: a child's peak RSS includes the
# parent's at the moment it was spawned.
PEAK_OF = """
import sys, tracemalloc
from cli.main import main
out, sys.argv = sys.argv[1], ["fugger", *sys.argv[2:]]
tracemalloc.start()
try:
    main()
except SystemExit as e:
    code = e.code
open(out, "w").write(f"{code} {tracemalloc.get_traced_memory()[1]}")
"""


def _peak_bytes(args: list[str], cwd: Path) -> int:
    """The peak memory Python allocated in one `fugger` process."""
    report = cwd / "peak.txt"
    subprocess.run([sys.executable, "-c", PEAK_OF, str(report), *args], cwd=REPO_ROOT,
                   stdout=subprocess.DEVNULL, check=True, timeout=CLI_HANG_GUARD_S)
    code, peak = report.read_text(encoding="utf-8").split()
    assert code in ("0", "None"), args
    return int(peak)


def _write_facts(facts: Path, form: str, snapshot: dict[str, Any], n: int) -> None:
    if form == "parquet":
        pq.write_table(pa.Table.from_pylist([snapshot] * n), facts, row_group_size=n)
    elif form == "jsonl":
        facts.write_text((json.dumps(snapshot) + "\n") * n, encoding="utf-8")
    else:
        facts.write_text(",".join(snapshot) + "\n" + (",".join(
            str(v) for v in snapshot.values()) + "\n") * n, encoding="utf-8")


@pytest.mark.parametrize("form", ["jsonl", "csv", "parquet"])
def test_eval_memory_is_flat_in_input_size(tmp_path: Path, form: str) -> None:
    """Ten times the input, well under one and a half times the memory. Each snapshot is
    large (about 50 KB) so that a reader holding the file would show at once (a Parquet file
    in one row group: the reader still takes it a few rows at a time)."""
    extra = {f"note_{i}": "x" * 2500 for i in range(20)}
    peaks = []
    for n in (20, 200):
        facts = tmp_path / f"facts-{n}.{form}"
        _write_facts(facts, form, {**CALM, **extra}, n)
        peaks.append(_peak_bytes(["eval", "--policies", str(REPO_ROOT / "policies"),
                                    "--facts", str(facts), "--audit",
                                    str(tmp_path / f"audit-{n}.db"), "--format", "json"],
                                   tmp_path))
    assert peaks[1] < 1.5 * peaks[0], peaks


def test_replay_refuses_a_history_out_of_time_order(tmp_path: Path, run_cli: RunCli) -> None:
    history = [{**CALM, "ts": "2024-01-03T21:00:00Z", "price": 100.0},
               {**CALM, "ts": "2024-01-02T21:00:00Z", "price": 101.0}]
    (tmp_path / "history.jsonl").write_text(_jsonl(*history), encoding="utf-8")
    proc = run_cli("run", "--policies", str(REPO_ROOT / "policies"), "--facts",
                   "history.jsonl", "--portfolio", str(REPO_ROOT / "examples" / "portfolio.yaml"),
                   "--audit", "audit.db", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith(
        "history.jsonl:2: ts 2024-01-02T21:00:00Z is earlier than 2024-01-03T21:00:00Z at "
        "history.jsonl:1: a replay reads days in time order")
    assert not (tmp_path / "audit.db").exists()
