"""The databases FuggerBot creates are its owner's alone (0600), and reading the audit store
streams: `audit list` stays flat in memory however large the store is."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLI_HANG_GUARD_S, REPO_ROOT, RunCli

from engine.audit.store import AuditStore
from engine.execution.paper import init_account

PAD = "x" * 2000
BIG = 30_000
SMALL = 100
#: Far below what holding BIG records of PAD would take (about 80 MB).
FLAT_MB = 25


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The common umask, under which a file created plainly is world-readable."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _facts(path: Path) -> Path:
    path.write_text(json.dumps({"ts": "2024-01-02T00:00:00Z", "symbol": "SPY",
                                "drift_score": 0.1, "volatility": 0.1, "coherence": 0.9,
                                "frs": 0.9, "meta_reliability": 0.9}) + "\n", encoding="utf-8")
    return path


@pytest.mark.usefixtures("umask_022")
def test_the_audit_store_and_the_paper_account_are_created_owner_only(
        tmp_path: Path, run_cli: RunCli) -> None:
    audit = tmp_path / "new" / "audit.db"
    evaluated = run_cli("eval", "--policies", str(REPO_ROOT / "policies"),
                        "--facts", str(_facts(tmp_path / "facts.jsonl")),
                        "--audit", str(audit))
    assert evaluated.returncode == 0, evaluated.stderr
    assert _mode(audit) == 0o600
    assert _mode(audit.parent) == 0o700

    paper = tmp_path / "acct" / "paper.db"
    created = run_cli("paper", "init", "--cash", "1000", "--broker", str(paper))
    assert created.returncode == 0, created.stderr
    assert _mode(paper) == 0o600

    # SQLite gives the files beside an open database the database's own mode.
    with AuditStore(audit) as store:
        store.append("note", "n1", {"summary": "x"})
        sidecars = [p for p in audit.parent.iterdir() if p.name != audit.name]
        assert sidecars
        assert all(_mode(p) == 0o600 for p in sidecars), [(p, oct(_mode(p))) for p in sidecars]
    init_account(tmp_path / "direct.db", 10)
    assert _mode(tmp_path / "direct.db") == 0o600


def _store_of(path: Path, n: int) -> Path:
    with AuditStore(path) as store:
        for start in range(0, n, 5_000):
            store.append_many([("order", f"o{i}", {"status": "filled", "pad": PAD})
                               for i in range(start, min(n, start + 5_000))])
    return path


def _peak_rss_mb(*args: str) -> float:
    """The peak memory of `fugger ARGS`, measured by a parent process of its own."""
    probe = ("import resource, subprocess, sys\n"
             "p = subprocess.run([sys.executable, '-m', 'cli.main', *sys.argv[1:]],"
             " capture_output=True, text=True)\n"
             "assert p.returncode == 0 and 'Traceback' not in p.stderr, p.stderr\n"
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    proc = subprocess.run([sys.executable, "-c", probe, *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=CLI_HANG_GUARD_S, check=False)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.strip()) / 1024  # kB on Linux


def test_audit_list_streams_the_store(tmp_path: Path) -> None:
    small, big = _store_of(tmp_path / "small.db", SMALL), _store_of(tmp_path / "big.db", BIG)
    # A filter that matches nothing reads every record.
    query = ("audit", "list", "--kind", "order", "--status", "denied", "--limit", "5")
    grown = _peak_rss_mb(*query, "--audit", str(big)) - _peak_rss_mb(*query, "--audit",
                                                                     str(small))
    assert grown < FLAT_MB, f"audit list grew by {grown:.0f} MB over {BIG} records"
