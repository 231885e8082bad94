"""The append-only audit store, attacked through its real SQLite file."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from conftest import SAFETY_YAML, RunCli, WritePolicy, run_fugger_many, safety_rule_line

from engine.audit.store import GENESIS, AuditError, AuditStore, record_hash
from engine.ids import short
from engine.policy.loader import load_policy_set
from engine.policy.model import PolicySet

RECORDS = 6


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "audit" / "audit.db"


@pytest.fixture
def filled(db_path: Path) -> Path:
    """A store of six records, closed, ready to be tampered with."""
    with AuditStore(db_path) as store:
        for i in range(1, RECORDS + 1):
            store.append("decision" if i % 2 else "order", f"ref-{i}",
                         {"n": i, "note": f"record {i}", "nested": {"x": [i, i * 0.5]}})
    return db_path


def tamper(path: Path, *statements: str) -> None:
    """Run SQL against the store's file behind its back, with the append-only triggers gone."""
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("DROP TRIGGER IF EXISTS records_no_update")
        db.execute("DROP TRIGGER IF EXISTS records_no_delete")
        for sql in statements:
            db.execute(sql)


def verify(path: Path) -> tuple[bool, int | None, str]:
    with AuditStore(path, create=False) as store:
        result = store.verify()
    return result.ok, result.first_bad_seq, result.message


def rows(path: Path) -> Iterator[tuple[int, str, str, str, str, str, str]]:
    with closing(sqlite3.connect(path)) as db:
        yield from db.execute("SELECT seq, kind, ref, ts, body, prev_hash, hash FROM records "
                              "ORDER BY seq")


# --- appending ----------------------------------------------------------------------------


def test_append_and_verify(db_path: Path) -> None:
    with AuditStore(db_path) as store:
        first = store.append("decision", "d-1", {"action": "halt", "x": 0.8})
        more = store.append_many([("order", "o-1", {"qty": 3}), ("order", "o-2", {"qty": -3})])
        assert first.seq == 1
        assert first.prev_hash == store.genesis != GENESIS
        assert [r.seq for r in more] == [2, 3]
        assert more[0].prev_hash == first.hash
        assert more[1].prev_hash == more[0].hash
        result = store.verify()
        assert result.ok
        assert result.checked == 3
        assert result.first_bad_seq is None
        assert result.head_hash == more[1].hash
        assert store.count() == 3
        assert store.count("order") == 2
        assert [r.ref for r in store.find("o-1")] == ["o-1"]
        assert store.find("2") == []  # a ref only: a number never stands for a seq here
        assert store.lookup("2")[0].ref == "o-1"  # what a person typed may be a seq
        assert store.latest("order") is not None
    # reopened from the file, everything is still there and chained
    with AuditStore(db_path, create=False) as store:
        assert store.verify().ok
        assert [r.body for r in store.iter_records()] == [
            {"action": "halt", "x": 0.8}, {"qty": 3}, {"qty": -3}]
    stored = list(rows(db_path))
    for seq, kind, ref, ts, body, prev, h in stored:
        assert record_hash(seq, kind, ref, ts, prev, body) == h


def test_empty_store_verifies(db_path: Path) -> None:
    with AuditStore(db_path) as store:
        result = store.verify()
    assert result.ok
    assert result.checked == 0


def test_opening_a_missing_store_without_create_fails(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="no audit store"):
        AuditStore(tmp_path / "absent.db", create=False)
    assert not (tmp_path / "absent.db").exists()


def test_a_store_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    content = b"this is not a database" * 100
    junk.write_bytes(content)
    with pytest.raises(AuditError) as refused:
        AuditStore(junk)
    assert str(refused.value).startswith(f"{junk}: cannot open the audit store: ")
    assert junk.read_bytes() == content  # nothing was written over the file


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE records SET body = '{}' WHERE seq = 2",
        "DELETE FROM records WHERE seq = 2",
        "DELETE FROM records",
    ],
)
def test_update_and_delete_are_refused_by_the_file(filled: Path, sql: str) -> None:
    with closing(sqlite3.connect(filled, isolation_level=None)) as db, \
            pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute(sql)
    assert verify(filled) == (True, None, "")
    assert len(list(rows(filled))) == RECORDS


# --- tampering --------------------------------------------------------------------------


def test_altered_body_is_named(filled: Path) -> None:
    tamper(filled, "UPDATE records SET body = replace(body, '\"n\":3', '\"n\":4') WHERE seq = 3")
    ok, bad, message = verify(filled)
    assert not ok
    assert bad == 3
    assert "record 3" in message
    assert "altered" in message


def test_altered_kind_or_ref_is_named(filled: Path) -> None:
    tamper(filled, "UPDATE records SET ref = 'someone-else' WHERE seq = 5")
    assert verify(filled)[:2] == (False, 5)


def test_deleted_middle_record_is_named(filled: Path) -> None:
    tamper(filled, "DELETE FROM records WHERE seq = 3")
    ok, bad, message = verify(filled)
    assert not ok
    assert bad == 3
    assert "record 3 is missing" in message


def test_deleted_middle_record_renumbered_is_named(filled: Path) -> None:
    # the attacker closes the gap too: the record now at seq 3 does not follow record 2
    tamper(filled, "DELETE FROM records WHERE seq = 3",
           "UPDATE records SET seq = seq - 1 WHERE seq > 3")
    ok, bad, _ = verify(filled)
    assert not ok
    assert bad == 3


def test_deleted_last_records_are_named(filled: Path) -> None:
    tamper(filled, "DELETE FROM records WHERE seq >= 5")
    ok, bad, message = verify(filled)
    assert not ok
    assert bad == 5
    assert "5..6" in message


def test_deleted_last_record_is_named(filled: Path) -> None:
    tamper(filled, f"DELETE FROM records WHERE seq = {RECORDS}")
    assert verify(filled)[:2] == (False, RECORDS)


def test_swapped_records_are_named(filled: Path) -> None:
    a, b = 2, 4
    cols = "kind, ref, ts, body, prev_hash, hash"
    tamper(
        filled,
        f"CREATE TEMP TABLE swap AS SELECT seq, {cols} FROM records WHERE seq IN ({a}, {b})",
        *(f"UPDATE records SET ({cols}) = (SELECT {cols} FROM swap WHERE seq = {other}) "
          f"WHERE seq = {mine}" for mine, other in ((a, b), (b, a))),
    )
    stored = {r[0]: r for r in rows(filled)}
    assert stored[a][2] == f"ref-{b}" and stored[b][2] == f"ref-{a}"
    ok, bad, message = verify(filled)
    assert not ok
    assert bad == a
    assert f"record {a}" in message


def test_swapped_bodies_only_are_named(filled: Path) -> None:
    tamper(
        filled,
        "CREATE TEMP TABLE swap AS SELECT seq, body FROM records WHERE seq IN (3, 5)",
        "UPDATE records SET body = (SELECT body FROM swap WHERE seq = 5) WHERE seq = 3",
        "UPDATE records SET body = (SELECT body FROM swap WHERE seq = 3) WHERE seq = 5",
    )
    assert verify(filled)[:2] == (False, 3)


def test_appending_after_verify_keeps_the_chain(filled: Path) -> None:
    with AuditStore(filled) as store:
        rec = store.append("decision", "late", {"n": 7})
        assert rec.seq == RECORDS + 1
        assert store.verify().ok


TAMPERING: dict[str, tuple[list[str], int]] = {
    "altered": (["UPDATE records SET body = '{\"n\":99}' WHERE seq = 4"], 4),
    "deleted-middle": (["DELETE FROM records WHERE seq = 2"], 2),
    "deleted-last": (["DELETE FROM records WHERE seq >= 4"], 4),
    "swapped": ([
        "CREATE TEMP TABLE swap AS SELECT * FROM records WHERE seq IN (3, 6)",
        "UPDATE records SET (kind, ref, ts, body, prev_hash, hash) = (SELECT kind, ref, ts, "
        "body, prev_hash, hash FROM swap WHERE seq = 6) WHERE seq = 3",
        "UPDATE records SET (kind, ref, ts, body, prev_hash, hash) = (SELECT kind, ref, ts, "
        "body, prev_hash, hash FROM swap WHERE seq = 3) WHERE seq = 6",
    ], 3),
}


def test_cli_verify_names_the_tampered_record(filled: Path, tmp_path: Path) -> None:
    """`fugger audit verify`: exit 0 on an intact store, 1 naming the first bad record of a
    tampered one, 1 when there is no store at all."""
    stores = {"intact": filled}
    for case, (statements, _) in TAMPERING.items():
        copy = tmp_path / f"{case}.db"
        copy.write_bytes(filled.read_bytes())
        tamper(copy, *statements)
        stores[case] = copy
    stores["absent"] = tmp_path / "nothing.db"
    results = dict(zip(stores, run_fugger_many(
        [("audit", "verify", "--audit", str(path)) for path in stores.values()],
        cwd=tmp_path), strict=True))

    absent = results.pop("absent")
    assert absent.returncode == 1
    assert "no audit store" in absent.stderr
    assert not stores["absent"].exists()  # verifying never creates a store

    intact = results.pop("intact")
    assert intact.returncode == 0, intact.stderr
    assert f"{RECORDS} records" in intact.stdout
    assert "intact" in intact.stdout
    for case, proc in results.items():
        bad = TAMPERING[case][1]
        assert proc.returncode == 1, case
        assert "TAMPERED" in proc.stderr, case
        assert str(stores[case]) in proc.stderr, case
        assert re.search(rf"\brecords? {bad}\b", proc.stderr), (case, proc.stderr)
        assert "intact" not in proc.stdout, case


# --- policy activations -----------------------------------------------------------------


def other_set(write_policy: WritePolicy) -> PolicySet:
    text = SAFETY_YAML.read_text(encoding="utf-8").replace("version: 2.1.0", "version: 2.1.1")
    return load_policy_set([str(write_policy(text, "safety.yaml", "v201"))])


def test_activation_recorded_once_per_policy_set(db_path: Path, safety_set: PolicySet,
                                                 write_policy: WritePolicy) -> None:
    newer = other_set(write_policy)
    assert newer.hash != safety_set.hash
    with AuditStore(db_path) as store:
        assert store.record_activation(safety_set, actor="alice") == safety_set.hash
        assert store.record_activation(safety_set, actor="bob") == safety_set.hash
        assert store.count("policy_activation") == 1
        store.append("decision", "d-1", {"n": 1})
        store.record_activation(safety_set)
        assert store.count("policy_activation") == 1
        store.record_activation(newer)
        store.record_activation(newer)
        assert store.count("policy_activation") == 2
        first = store.activation(safety_set.hash)
        assert first is not None
        assert first.ref == safety_set.hash
        assert first.body["activated_by"] == "alice"
        (policy,) = first.body["policies"]
        assert policy["text"] == SAFETY_YAML.read_text(encoding="utf-8")
        assert policy["name"] == "core-safety"
        assert policy["version"] == "2.1.0"
        second = store.activation(newer.hash)
        assert second is not None
        assert second.body["policies"][0]["version"] == "2.1.1"
        assert store.verify().ok


# --- why --------------------------------------------------------------------------------

WHY_FACTS = [
    {"ts": "2025-03-04T15:30:00Z", "symbol": "SP500", "drift_score": 0.12,
     "volatility": 0.42, "coherence": 0.9, "frs": 0.9, "meta_reliability": 0.9},
    {"ts": "2025-03-04T15:30:00Z", "symbol": "WTI", "drift_score": 0.12,
     "coherence": 0.9, "frs": 0.9, "meta_reliability": 0.9},
    {"ts": "2025-03-04T15:30:00Z", "symbol": "NASDAQ", "drift_score": 0.91,
     "volatility": 0.1, "coherence": 0.3, "frs": 0.9, "meta_reliability": 0.9},
]


def test_why_explains_a_recorded_decision(safety_dir: Path, tmp_path: Path,
                                          run_cli: RunCli) -> None:
    facts = tmp_path / "facts.jsonl"
    facts.write_text("".join(json.dumps(f) + "\n" for f in WHY_FACTS))
    db = tmp_path / "audit.db"
    proc = run_cli("eval", "--policies", "policies", "--facts", "facts.jsonl",
                   "--audit", str(db), "--format", "json", "--clock", "snapshot", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    decisions = [json.loads(ln) for ln in proc.stdout.splitlines()]
    assert [d["action"] for d in decisions] == ["flatten", "halt", "halt"]

    flatten = decisions[0]
    why = run_cli("audit", "why", flatten["decision_id"], "--audit", str(db), cwd=tmp_path)
    assert why.returncode == 0, why.stderr
    text = why.stdout
    line = safety_rule_line("high-volatility-flatten")
    assert f"Decision {short(flatten['decision_id'])} for " in text
    assert "FLATTEN" in text
    assert "high-volatility-flatten" in text
    assert f"policies/safety.yaml:{line}:" in text
    assert "core-safety 2.1.0" in text
    assert re.search(r"volatility >= 0\.35: observed 0\.42 -> true", text), text
    assert "Re-evaluated from the recorded policy text and facts: same action" in text

    # the same policies again: decisions are added, the activation is not recorded twice
    again = run_cli("eval", "--policies", "policies", "--facts", "facts.jsonl",
                    "--audit", str(db), "--format", "json", "--clock", "snapshot",
                    cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    with AuditStore(db, create=False) as store:
        assert store.count("policy_activation") == 1
        assert store.count("decision") == 2 * len(WHY_FACTS)
        assert store.verify().ok

    missing = decisions[1]
    assert missing["deciding_rule"]["rule"] == "fact-missing:volatility"
    why = run_cli("audit", "why", missing["decision_id"], "--audit", str(db), cwd=tmp_path)
    assert why.returncode == 0, why.stderr
    assert "fact-missing:volatility" in why.stdout
    assert "Re-evaluated from the recorded policy text and facts: same action" in why.stdout

    both = decisions[2]
    why = run_cli("audit", "why", both["decision_id"], "--audit", str(db), "--format", "json",
                  cwd=tmp_path)
    assert why.returncode == 0, why.stderr
    report = json.loads(why.stdout)
    assert report["decision"]["decision"]["deciding_rule"]["rule"] == "drift-spike-halt"
    assert report["decision"]["facts"] == WHY_FACTS[2]
    assert "same action" in report["decision"]["replay"]


def test_a_batch_that_fails_inside_its_transaction_records_nothing(db_path: Path) -> None:
    """SQLite refusing one record of a batch (here a trigger standing in for a full disk or a
    constraint) refuses the whole batch: the caller gets an AuditError, never records that
    were not committed, and the chain goes on as if the batch had not been tried."""
    with AuditStore(db_path) as store:
        store.append("decision", "before", {"n": 0})
        with closing(sqlite3.connect(db_path, isolation_level=None)) as db:
            db.execute("CREATE TRIGGER refuse_poison BEFORE INSERT ON records "
                       "WHEN NEW.kind = 'poison' BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        batch = [("decision", "d-1", {"n": 1}), ("poison", "p-1", {"n": 2}),
                 ("decision", "d-2", {"n": 3})]
        with pytest.raises(AuditError, match="could not record: disk full"):
            store.append_many(batch)
        assert [r.ref for r in store.iter_records()] == ["before"]
        after = store.append("decision", "after", {"n": 4})
        assert after.seq == 2
        assert store.verify().ok
    with AuditStore(db_path) as again:
        assert [r.ref for r in again.iter_records()] == ["before", "after"]
        assert again.verify().ok
