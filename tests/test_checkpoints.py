"""Signed checkpoints: `fugger audit verify --checkpoint` catches what the chain alone cannot
(re-chaining, truncation with the head fixed up, reordering, a store rebuilt from scratch) and
refuses a forged checkpoint."""

from __future__ import annotations

import json
import shutil
import sqlite3
import stat
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import REPO_ROOT, RunCli, run_fugger_many

from engine.audit import checkpoint
from engine.audit.store import AuditStore, record_hash
from engine.audit.witness import Witness
from engine.timeutil import utc_now


def _fill(store: AuditStore, first: int, last: int) -> None:
    store.append_many([("note", f"n-{i}", {"n": i, "text": f"record {i}"})
                       for i in range(first, last + 1)])


def _rechain(db: Path, edit: Callable[[sqlite3.Connection], int]) -> None:
    """Tamper as someone who can write the file: drop the triggers, `edit` (which returns the
    first seq it changed), then recompute every hash from there and fix up the head."""
    con = sqlite3.connect(db)
    con.execute("DROP TRIGGER records_no_update")
    con.execute("DROP TRIGGER records_no_delete")
    start = edit(con)
    rows = con.execute("SELECT seq, kind, ref, ts, body FROM records WHERE seq >= ? "
                       "ORDER BY seq", (start,)).fetchall()
    prev = con.execute("SELECT hash FROM records WHERE seq = ?", (start - 1,)).fetchone()
    prev_hash = prev[0] if prev else con.execute(
        "SELECT value FROM meta WHERE key = 'genesis'").fetchone()[0]
    for seq, kind, ref, ts, body in rows:
        h = record_hash(seq, kind, ref, ts, prev_hash, body)
        con.execute("UPDATE records SET prev_hash = ?, hash = ? WHERE seq = ?",
                    (prev_hash, h, seq))
        prev_hash = h
    last = con.execute("SELECT MAX(seq) FROM records").fetchone()[0]
    con.execute("UPDATE head SET seq = ?, hash = ? WHERE id = 1", (last, prev_hash))
    con.commit()
    con.close()


def _edit_value(con: sqlite3.Connection) -> int:
    con.execute("""UPDATE records SET body = '{"n":25,"text":"record 2500"}' WHERE seq = 25""")
    return 25


def _truncate(con: sqlite3.Connection) -> int:
    con.execute("DELETE FROM records WHERE seq >= 28")
    return 28


def _swap(con: sqlite3.Connection) -> int:
    a, b = (con.execute("SELECT kind, ref, ts, body FROM records WHERE seq = ?", (s,)).fetchone()
            for s in (12, 13))
    for seq, (kind, ref, ts, body) in ((12, b), (13, a)):
        con.execute("UPDATE records SET kind = ?, ref = ?, ts = ?, body = ? WHERE seq = ?",
                    (kind, ref, ts, body, seq))
    return 12


def _rebuild(db: Path) -> None:
    """A new store with the same records, appended through the public API, in place of the
    old file."""
    fresh = db.with_name(f"{db.stem}-fresh.db")
    with AuditStore(db) as old, AuditStore(fresh) as new:
        new.append_many([(r.kind, r.ref, r.body) for r in old.iter_records()])
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.move(fresh, db)


def test_every_tamper_case_is_caught_at_its_first_bad_seq(tmp_path: Path,
                                                          run_cli: RunCli) -> None:
    key, witness, db = tmp_path / "keys" / "audit.key", tmp_path / "witness", tmp_path / "a.db"
    made = run_cli("audit", "keygen", "--key", str(key))
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    again = run_cli("audit", "keygen", "--key", str(key))
    assert again.returncode == 1 and "never overwritten" in again.stderr
    with AuditStore(db) as store:
        _fill(store, 1, 20)
    take = ["audit", "checkpoint", "--audit", str(db), "--key", str(key), "--witness",
            str(witness)]
    assert run_cli(*take).returncode == 0
    with AuditStore(db) as store:
        _fill(store, 21, 30)
    assert run_cli(*take).returncode == 0
    cps = sorted(witness.glob("*.json"))
    assert [(c.seq, c.from_seq) for c in map(checkpoint.read, cps)] == [(20, 1), (30, 21)]

    cases: dict[str, tuple[Callable[[Path], None], int]] = {
        "edited": (lambda p: _rechain(p, _edit_value), 25),
        "truncated": (lambda p: _rechain(p, _truncate), 28),
        "swapped": (lambda p: _rechain(p, _swap), 12),
        "rebuilt": (_rebuild, 1),
    }
    stores = {"intact": tmp_path / "intact.db"}
    shutil.copy(db, stores["intact"])
    for name, (tamper, _) in cases.items():
        stores[name] = tmp_path / f"{name}.db"
        shutil.copy(db, stores[name])
        tamper(stores[name])
    checks = [["audit", "verify", "--audit", str(path), "--key", str(key),
               *(a for c in cps for a in ("--checkpoint", str(c)))]
              for path in stores.values()]
    # The chain alone is fooled by every case: it is consistent with itself.
    chain_only = [["audit", "verify", "--audit", str(stores[n])] for n in cases]
    results = dict(zip([*stores, *(f"{n}-chain" for n in cases)],
                       run_fugger_many([*checks, *chain_only]), strict=True))
    assert results["intact"].returncode == 0, results["intact"].stderr
    assert "agrees with 2 checkpoint(s)" in results["intact"].stdout
    for name, (_, first_bad) in cases.items():
        proc = results[name]
        assert proc.returncode == 1, (name, proc.stdout)
        assert f"TAMPERED at seq {first_bad}:" in proc.stderr, (name, proc.stderr)
        assert results[f"{name}-chain"].returncode == 0, name
    assert "rebuilt from scratch" in results["rebuilt"].stderr
    assert "truncated" in results["truncated"].stderr


def test_a_forged_or_altered_checkpoint_is_refused(tmp_path: Path, run_cli: RunCli) -> None:
    key, other = tmp_path / "audit.key", tmp_path / "other.key"
    checkpoint.keygen(key)
    checkpoint.keygen(other)
    db = tmp_path / "a.db"
    with AuditStore(db) as store:
        _fill(store, 1, 5)
        good = checkpoint.take(store, checkpoint.load_private(key), utc_now())
        forged = checkpoint.take(store, checkpoint.load_private(other), utc_now())
    altered = {**good.to_json(), "seq": 4, "digests": good.to_json()["digests"][:4],
               "head_hash": "0" * 64}
    files = {"forged": checkpoint.write(forged, tmp_path / "w1"),
             "altered": tmp_path / "altered.json"}
    files["altered"].write_text(json.dumps(altered), encoding="utf-8")
    procs = run_fugger_many([["audit", "verify", "--audit", str(db), "--key", str(key),
                              "--checkpoint", str(f)] for f in files.values()])
    for (name, path), proc in zip(files.items(), procs, strict=True):
        assert proc.returncode == 1, name
        assert f"checkpoint refused: {path}:" in proc.stderr
    assert "not by the trusted key" in procs[0].stderr
    assert "signature does not verify" in procs[1].stderr


def test_the_signing_key_must_be_private(tmp_path: Path) -> None:
    key = tmp_path / "audit.key"
    checkpoint.keygen(key)
    key.chmod(0o644)
    with pytest.raises(checkpoint.CheckpointError, match="open to other users"):
        checkpoint.load_private(key)


def test_the_witness_checkpoints_every_n_records_or_t_seconds(tmp_path: Path) -> None:
    key = tmp_path / "audit.key"
    checkpoint.keygen(key)
    seen: list[int] = []
    now = utc_now()
    with AuditStore(tmp_path / "a.db") as store:
        witness = Witness(store, checkpoint.load_private(key), tmp_path / "witness",
                          every_records=10, every=timedelta(minutes=5),
                          on_checkpoint=lambda cp, _: seen.append(cp.seq))
        _fill(store, 1, 9)
        assert witness.maybe(now) is None
        _fill(store, 10, 10)
        assert witness.maybe(now) is not None
        _fill(store, 11, 12)
        assert witness.maybe(now + timedelta(minutes=4)) is None
        assert witness.maybe(now + timedelta(minutes=5)) is not None
        assert witness.maybe(now + timedelta(minutes=20)) is None  # nothing new
        result = checkpoint.verify(store, [(str(p), checkpoint.read(p)) for p in
                                           sorted((tmp_path / "witness").glob("*.json"))],
                                   checkpoint.load_public(checkpoint.public_path(key)))
    assert seen == [10, 12]
    assert result.ok


def test_a_restarted_witness_goes_on_from_its_last_checkpoint(tmp_path: Path) -> None:
    """A witness started again reads where the last one stopped: records already vouched
    for are not checkpointed twice, and the time rule counts from the first look after the
    restart, not from nothing."""
    key = tmp_path / "audit.key"
    checkpoint.keygen(key)
    private = checkpoint.load_private(key)
    for every_records, every in ((0, timedelta(minutes=5)), (10, timedelta(0))):
        with AuditStore(tmp_path / "a.db") as store, \
                pytest.raises(ValueError, match="a positive record count and interval"):
            Witness(store, private, tmp_path / "witness", every_records=every_records,
                    every=every)
    now = utc_now()
    with AuditStore(tmp_path / "a.db") as store:
        first = Witness(store, private, tmp_path / "witness", every_records=3)
        assert first.now(now) is None  # an empty store: nothing to vouch for
        _fill(store, 1, 3)
        taken = first.maybe(now)
        assert taken is not None and taken.seq == 3
        assert first.now(now) is None
        again = Witness(store, private, tmp_path / "witness", every_records=3,
                        every=timedelta(minutes=5))
        assert again.last is not None and again.last.seq == 3
        assert again.maybe(now) is None
        _fill(store, 4, 4)
        assert again.maybe(now + timedelta(hours=2)) is None  # the first look starts the clock
        assert again.maybe(now + timedelta(hours=2, minutes=4)) is None
        later = again.maybe(now + timedelta(hours=2, minutes=5))
        assert later is not None and later.seq == 4


def test_a_run_hands_checkpoints_to_its_witness_and_its_sinks(tmp_path: Path,
                                                              run_cli: RunCli) -> None:
    key, witness, db = tmp_path / "audit.key", tmp_path / "witness", tmp_path / "a.db"
    checkpoint.keygen(key)
    ran = run_cli("run", "--facts", str(REPO_ROOT / "examples" / "history.jsonl"),
                  "--from", "2008-10-01", "--to", "2008-10-20", "--audit", str(db),
                  "--witness", str(witness), "--checkpoint-every", "40", "--key", str(key))
    assert ran.returncode == 0, ran.stderr
    files = sorted(witness.glob("*.json"))
    cps = [checkpoint.read(f) for f in files]
    with AuditStore(db) as store:
        assert len(cps) >= 2 and cps[-1].seq == store.head_seq() - len(
            [r for r in store.iter_records("alert") if r.seq > cps[-1].seq])
        alerted = [r.body["context"]["seq"] for r in store.iter_records("alert")
                   if r.body["kind"] == "checkpoint"]
    assert alerted == [cp.seq for cp in cps]
    checked = run_cli("audit", "verify", "--audit", str(db), "--key", str(key),
                      *(a for f in files for a in ("--checkpoint", str(f))))
    assert checked.returncode == 0, checked.stderr
