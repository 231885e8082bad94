"""The audit store's reading and writing calls, each on a real SQLite file: what a caller gets
back and what a second connection to the same file sees."""

from __future__ import annotations

import sqlite3
import stat
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from engine.audit.store import GENESIS, AuditError, AuditStore, Record
from engine.policy.model import PolicySet


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "audit.db"


@pytest.fixture
def store(path: Path) -> Iterator[AuditStore]:
    with AuditStore(path) as s:
        yield s


def seen_by_another_connection(path: Path) -> list[str]:
    """The refs another process would read from the file now."""
    with closing(sqlite3.connect(path)) as db:
        return [ref for (ref,) in db.execute("SELECT ref FROM records ORDER BY seq")]


def refs(records: list[Record] | Iterator[Record]) -> list[str]:
    return [r.ref for r in records]


def test_a_new_store_is_private_and_keeps_its_identity(path: Path) -> None:
    with AuditStore(path) as store:
        first = store.append("decision", "d-1", {"n": 1})
        store_id, genesis = store.store_id, store.genesis
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(store_id) == 32 and genesis != GENESIS
    # The first record follows the store's own genesis, so a rebuilt store is told apart.
    assert first.prev_hash == genesis
    with AuditStore(path) as again:
        assert (again.store_id, again.genesis) == (store_id, genesis)
        assert again.append("decision", "d-2", {"n": 2}).prev_hash == first.hash
    with AuditStore(path.with_name("other.db")) as other:
        assert other.genesis not in (genesis, GENESIS)


def test_a_store_from_before_ids_keeps_the_old_genesis(path: Path) -> None:
    """A store that held records before stores had ids follows the all-zero genesis, so its
    chain still verifies."""
    with AuditStore(path) as store:
        store.append("decision", "d-1", {"n": 1})
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("DELETE FROM meta WHERE key IN ('store_id', 'genesis')")
        db.execute("DROP TRIGGER records_no_delete")
        db.execute("DELETE FROM records")
        db.execute("DELETE FROM head")
    with AuditStore(path) as store:
        assert store.genesis != GENESIS  # empty again: a new chain with its own genesis
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("DELETE FROM meta WHERE key IN ('store_id', 'genesis')")
        db.execute("INSERT INTO records(seq, kind, ref, ts, body, prev_hash, hash) "
                   "VALUES (1, 'decision', 'old', 't', '{}', ?, 'h')", (GENESIS,))
    with AuditStore(path) as store:
        assert store.genesis == GENESIS


def test_latest_of_a_run_never_stands_in_for_the_live_one(store: AuditStore) -> None:
    store.append("halt", "live-1", {"run_id": None, "n": 1})
    store.append("halt", "run-1", {"run_id": "r1", "n": 2})
    store.append("decision", "d", {"run_id": None})
    newest = store.latest("halt")
    assert newest is not None and newest.ref == "run-1"
    live = store.latest("halt", run_id=None)
    assert live is not None and live.ref == "live-1"
    run = store.latest("halt", run_id="r1")
    assert run is not None and run.ref == "run-1"
    assert store.latest("halt", run_id="r2") is None
    assert store.latest("resume") is None
    assert store.latest("resume", run_id=None) is None


def test_append_once_refuses_a_second_record_of_the_kinds_named(store: AuditStore,
                                                               path: Path) -> None:
    first = store.append_once("approved", "item-1", {"by": "ann"}, unless=("approved",
                                                                            "rejected"))
    assert first is not None and (first.kind, first.ref, first.body) == (
        "approved", "item-1", {"by": "ann"})
    assert store.append_once("rejected", "item-1", {"by": "bob"},
                             unless=("approved", "rejected")) is None
    # Another item, or a kind not named, is not refused.
    assert store.append_once("approved", "item-2", {}, unless=("approved",)) is not None
    assert store.append_once("note", "item-1", {}, unless=("rejected",)) is not None
    assert seen_by_another_connection(path) == ["item-1", "item-2", "item-1"]
    assert store.verify().ok


def test_append_checked_builds_from_the_records_about_its_ref(store: AuditStore,
                                                             path: Path) -> None:
    store.append("vote", "item", {"by": "ann"})
    store.append("vote", "other", {"by": "bob"})
    seen: list[list[str]] = []

    def build(records: list[Record]) -> list[tuple[str, str, dict[str, Any]]]:
        seen.append([r.body["by"] for r in records])
        return [("vote", "item", {"by": "cid"}), ("quorum", "item", {"votes": 2})]

    made = store.append_checked("item", build)
    assert seen == [["ann"]]
    assert [(r.kind, r.seq) for r in made] == [("vote", 3), ("quorum", 4)]
    assert store.append_checked("item", lambda records: []) == []

    def refuse(records: list[Record]) -> list[tuple[str, str, dict[str, Any]]]:
        raise ValueError("quorum reached already")

    with pytest.raises(ValueError, match="quorum reached already"):
        store.append_checked("item", refuse)
    assert seen_by_another_connection(path) == ["item", "other", "item", "item"]
    assert store.append("vote", "item", {}).seq == 5
    assert store.verify().ok


def test_a_held_transaction_commits_its_appends_together(store: AuditStore,
                                                         path: Path) -> None:
    store.append("decision", "before", {})
    assert store.commits == 1
    with store.transaction():
        store.append("decision", "a", {})
        store.append_many([("decision", "b", {}), ("order", "c", {})])
        assert seen_by_another_connection(path) == ["before"]
        assert refs(store.records(newest_first=False)) == ["before", "a", "b", "c"]
        with pytest.raises(AuditError, match="a transaction is already held"), \
                store.transaction():
            pass
    assert seen_by_another_connection(path) == ["before", "a", "b", "c"]
    assert store.commits == 2
    assert store.verify().ok


def test_a_refused_append_in_a_held_transaction_leaves_the_others(store: AuditStore,
                                                                  path: Path) -> None:
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("CREATE TRIGGER refuse_poison BEFORE INSERT ON records "
                   "WHEN NEW.kind = 'poison' BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    with store.transaction():
        store.append("decision", "a", {})
        with pytest.raises(AuditError, match="could not record: disk full"):
            store.append_many([("decision", "lost", {}), ("poison", "p", {})])
        assert store.append_once("decision", "a", {}, unless=("decision",)) is None
        store.append("decision", "b", {})
    assert seen_by_another_connection(path) == ["a", "b"]
    assert store.verify().ok


def test_a_transaction_that_raises_still_commits_what_happened(store: AuditStore,
                                                               path: Path) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        store.append("order", "sent", {})
        raise RuntimeError("the broker went away")
    assert seen_by_another_connection(path) == ["sent"]
    # The store is usable again afterwards.
    with store.transaction():
        store.append("order", "next", {})
    assert seen_by_another_connection(path) == ["sent", "next"]


def test_records_an_effect_follows_are_on_disk_before_it(store: AuditStore,
                                                        path: Path) -> None:
    store.durable_before_effect()  # outside a transaction: nothing to do
    with store.transaction():
        store.append("order", "intent", {})
        store.durable_before_effect()
        assert seen_by_another_connection(path) == ["intent"]
        store.append("order", "fill", {})
        assert seen_by_another_connection(path) == ["intent"]
    assert seen_by_another_connection(path) == ["intent", "fill"]
    assert store.commits == 2
    # A replay's transaction is redone from its inputs: nothing is committed early.
    with store.transaction(durable=False):
        store.append("order", "replayed", {})
        store.durable_before_effect()
        assert seen_by_another_connection(path) == ["intent", "fill"]
    assert seen_by_another_connection(path) == ["intent", "fill", "replayed"]
    assert store.verify().ok


@pytest.fixture
def filled(store: AuditStore) -> AuditStore:
    for kind, ref in (("decision", "d-1"), ("order", "o-1"), ("decision", "d-2"),
                      ("order", "o-1"), ("alert", "12"), ("decision", "d-3")):
        store.append(kind, ref, {"ref": ref})
    return store


def test_reading_by_kind_order_and_limit(filled: AuditStore) -> None:
    assert refs(filled.records("decision")) == ["d-3", "d-2", "d-1"]
    assert refs(filled.records("decision", limit=2)) == ["d-3", "d-2"]
    assert refs(filled.records("decision", newest_first=False)) == ["d-1", "d-2", "d-3"]
    assert refs(filled.records(limit=1)) == ["d-3"]
    assert refs(filled.iter_records("order")) == ["o-1", "o-1"]
    assert refs(filled.iter_records(newest_first=True))[:2] == ["d-3", "12"]
    assert refs(filled.iter_records()) == ["d-1", "o-1", "d-2", "o-1", "12", "d-3"]
    assert (filled.count(), filled.count("decision"), filled.count("halt")) == (6, 3, 0)
    assert filled.kinds() == {"decision", "order", "alert"}
    assert filled.head_seq() == 6
    hashes = filled.hashes()
    assert hashes == [r.hash for r in filled.iter_records()]
    assert filled.verify().head_hash == hashes[-1]


def test_finding_what_a_person_typed(filled: AuditStore) -> None:
    assert [(r.seq, r.kind) for r in filled.find("o-1")] == [(2, "order"), (4, "order")]
    assert filled.find("o-") == []
    # A ref wins over a seq number; digits that are no ref read as a seq.
    assert [r.seq for r in filled.lookup("12")] == [5]
    assert [r.ref for r in filled.lookup("3")] == ["d-2"]
    assert filled.lookup("99") == []
    assert filled.lookup("d-") == []
    assert filled.refs_starting("d-") == ["d-1", "d-2", "d-3"]
    assert filled.refs_starting("d-", limit=2) == ["d-1", "d-2"]
    assert filled.refs_starting("o") == ["o-1"]
    assert filled.refs_starting("") == []
    assert filled.refs_starting("x") == []


def test_activations_by_scope_and_run(store: AuditStore, safety_set: PolicySet) -> None:
    assert store.active() is None
    assert store.record_activation(safety_set, actor="ann", scope="live") == safety_set.hash
    live = store.active("live")
    assert live is not None and live.body["activated_by"] == "ann"
    assert (live.body["scope"], live.body["run_id"]) == ("live", None)
    # A run's activation is its own: it neither repeats nor replaces the live one.
    store.record_activation(safety_set, scope="run", run_id="r1")
    store.record_activation(safety_set, scope="run", run_id="r1")
    store.record_activation(safety_set, scope="live")
    assert store.count("policy_activation") == 2
    run = store.active("run", "r1")
    assert run is not None and run.seq == 2
    assert store.active("run", "r2") is None
    assert store.active("live") == live
    activation = store.activation(safety_set.hash)
    assert activation is not None and activation.seq == 2
    assert store.activation("0" * 64) is None
    # An evaluation is recorded once per set in a row, whatever the other scopes did.
    store.record_activation(safety_set)
    assert store.count("policy_activation") == 2
    with pytest.raises(ValueError, match="unknown activation scope 'test'"):
        store.record_activation(safety_set, scope="test")
    # An activation recorded without a scope counts for none.
    store.append("policy_activation", "x", {"hash": "x"})
    assert store.active("live") == live
    body = live.body
    assert body["hash"] == safety_set.hash and isinstance(body["pid"], int) and body["host"]
    assert [p["name"] for p in body["policies"]] == ["core-safety"]
