"""Held transactions, as a replay uses them for each day: the audit store's and the paper
broker's calls commit together at the end, each call keeps its own all-or-nothing, and a
replay killed with SIGKILL leaves a whole chain of whole days."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from contextlib import closing
from pathlib import Path

import pytest
from conftest import CLI_HANG_GUARD_S, REPO_ROOT

from engine.audit.store import AuditError, AuditStore
from engine.execution.broker import OrderRequest, OrderStatus, Side
from engine.execution.paper import PaperBroker, init_account


def committed(path: Path, sql: str) -> int:
    """What another connection sees: only committed rows."""
    with closing(sqlite3.connect(path)) as db:
        return int(db.execute(sql).fetchone()[0])


# --- the audit store ----------------------------------------------------------------------


def test_appends_in_a_held_transaction_commit_together(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    with AuditStore(path) as store:
        store.append("note", "before", {"n": 0})
        with store.transaction(durable=False):
            store.append("note", "a", {"n": 1})
            store.append_many([("note", "b", {"n": 2}), ("note", "c", {"n": 3})])
            # The store's own reads see the day so far; another connection does not.
            assert [r.ref for r in store.records("note", newest_first=False)] == [
                "before", "a", "b", "c"]
            assert committed(path, "SELECT COUNT(*) FROM records") == 1
        assert committed(path, "SELECT COUNT(*) FROM records") == 4
        assert committed(path, "SELECT seq FROM head") == 4
        assert store.verify().ok


def test_a_refused_or_failed_append_keeps_the_rest_of_the_transaction(tmp_path: Path) -> None:
    with AuditStore(tmp_path / "audit.db") as store:
        with store.transaction():
            store.append("approval_requested", "item-1", {"n": 1})
            assert store.append_once("approval_requested", "item-1", {"n": 2},
                                     unless=("approval_requested",)) is None
            with pytest.raises(TypeError):  # a body that cannot be written: nothing of it
                store.append_many([("note", "x", {"n": 3}), ("note", "y", {"bad": object()})])
            store.append("note", "z", {"n": 4})
        assert [r.ref for r in store.records(newest_first=False)] == ["item-1", "z"]
        assert store.verify().ok


def test_a_held_transaction_commits_what_was_done_when_the_day_fails(tmp_path: Path) -> None:
    with AuditStore(tmp_path / "audit.db") as store:
        with pytest.raises(RuntimeError), store.transaction():
            store.append("order", "o-1", {"status": "submitting"})
            raise RuntimeError("the cycle failed after the order was recorded")
        assert [r.ref for r in store.records()] == ["o-1"]
        with store.transaction(), pytest.raises(AuditError, match="already held"), \
                store.transaction():
            pass


# --- the paper broker ---------------------------------------------------------------------


def test_broker_calls_in_a_held_transaction_commit_together(tmp_path: Path) -> None:
    path = init_account(tmp_path / "paper.db", 10_000.0)
    broker = PaperBroker(path)
    with broker.transaction(durable=False):
        first = broker.submit(OrderRequest("c-1", "AAA", Side.BUY, 10, 100.0))
        # Too dear: rejected and recorded, and the fill before it stands.
        second = broker.submit(OrderRequest("c-2", "AAA", Side.BUY, 1000, 100.0))
        assert (first.status, second.status) == (OrderStatus.FILLED, OrderStatus.REJECTED)
        assert broker.positions() == {"AAA": 10}
        assert broker.cash() == 9_000.0
        assert committed(path, "SELECT COUNT(*) FROM orders") == 0
    assert committed(path, "SELECT COUNT(*) FROM orders") == 2
    reopened = PaperBroker(path)
    assert (reopened.positions(), reopened.cash()) == ({"AAA": 10}, 9_000.0)


def test_a_broker_session_keeps_one_connection(tmp_path: Path) -> None:
    broker = PaperBroker(init_account(tmp_path / "paper.db", 1_000.0))
    with broker.session():
        broker.submit(OrderRequest("c-1", "AAA", Side.BUY, 1, 10.0))
        kept = broker._conn
        assert kept is not None
        broker.positions()
        with broker.transaction():
            broker.cash()
            assert broker._conn is kept
    assert broker._conn is None
    assert broker.positions() == {"AAA": 1}


# --- a replay killed mid-run ----------------------------------------------------------------


def test_a_replay_killed_mid_run_leaves_whole_days_on_an_intact_chain(tmp_path: Path) -> None:
    audit = tmp_path / "audit.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "run", "--policies", "policies", "--facts",
         "examples/history.jsonl", "--portfolio", "examples/portfolio.yaml", "--audit",
         str(audit)], cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True)
    assert proc.stderr is not None
    # A hang guard, not a speed requirement: reading stderr has no timeout of its own.
    guard = threading.Timer(CLI_HANG_GUARD_S, proc.kill)
    guard.start()
    try:
        for line in proc.stderr:  # a line a year: killed early in its second year
            if line.startswith("day ") and not line.startswith("day 1/"):
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        guard.cancel()
        proc.kill()
        proc.wait()
    with AuditStore(audit, create=False) as store:
        result = store.verify()
        assert result.ok, result.message
        assert store.latest("run_finished") is None
        cycles = [r.body for r in store.iter_records("cycle")]
        assert cycles, "at least the first year was committed"
        decided: dict[str, int] = {}
        for r in store.iter_records("decision"):
            ts = r.body["decision"]["ts"]
            decided[ts] = decided.get(ts, 0) + 1
    # Every committed day has all its decisions, and no decision outlives its day's record.
    assert sorted(decided) == [c["ts"] for c in cycles]
    assert [decided[c["ts"]] for c in cycles] == [len(c["actions"]) for c in cycles]


def test_a_projection_catches_up_inside_and_outside_a_held_transaction(tmp_path: Path) -> None:
    # Inside a held transaction nothing but this connection can append, so what it appended
    # is all there is to read; before and after the hold, other writers' records are read.
    path = tmp_path / "audit.db"
    with AuditStore(path) as store, AuditStore(path) as other:
        other.append("note", "a", {"n": 1})
        head, rows = store.records_since(0, ("note",))
        assert head == 1 and [r.ref for r in rows] == ["a"]
        other.append_many([("note", "b", {"n": 2}), ("other", "x", {})])
        with store.transaction(durable=False):
            head, rows = store.records_since(head, ("note",))
            assert head == 3 and [r.ref for r in rows] == ["b"]
            store.append("other", "y", {})
            assert store.records_since(head, ("note",)) == (4, [])
            store.append("note", "c", {})
            head, rows = store.records_since(head, ("note",))
            assert head == 5 and [r.ref for r in rows] == ["c"]
            # A refused append leaves the head where it was.
            assert store.append_once("note", "c", {}, unless=("note",)) is None
            assert store.records_since(head, ("note",)) == (5, [])
        other.append("note", "d", {})
        head, rows = store.records_since(head, ("note",))
        assert head == 6 and [r.ref for r in rows] == ["d"]
        # Appends after the hold follow the records the hold committed.
        store.append("note", "e", {})
        assert store.verify().ok and other.verify().ok
        assert [r.seq for r in store.iter_records()] == [1, 2, 3, 4, 5, 6, 7]
