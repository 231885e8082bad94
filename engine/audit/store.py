"""An append-only, hash-chained record store in SQLite.

Each record carries the hash of the one before it, so altering, removing or reordering a
record breaks the chain at that record, and `verify` names it. SQLite runs in WAL mode with
`synchronous=FULL`: a record is durable once the transaction that appended it has committed.
Appending many records in one transaction is how the store sustains high decision rates, and
`transaction()` holds one write transaction across many appends (a replayed day, or the
service's group commit of concurrent requests).
A new store is readable by its owner only (0600). Reads stream: a cursor over the store, one
record at a time, so reading is flat in memory whatever the store's size.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.canonical import canonical
from engine.policy.model import PolicySet
from engine.private_files import create_private_file
from engine.sqlite_tx import held_write
from engine.timeutil import format_utc, utc_now

DEFAULT_PATH = ".fugger/audit.db"
GENESIS = "0" * 64
SCHEMA_VERSION = "1"

_DDL = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    ref TEXT NOT NULL,
    ts TEXT NOT NULL,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_ref ON records(ref);
CREATE INDEX IF NOT EXISTS records_kind ON records(kind, seq);
CREATE TABLE IF NOT EXISTS head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS records_no_update BEFORE UPDATE ON records
    BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS records_no_delete BEFORE DELETE ON records
    BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
"""


class AuditError(Exception):
    """The audit store cannot be opened or written; nothing was recorded."""


@dataclass(frozen=True)
class Record:
    seq: int
    kind: str
    ref: str
    ts: str
    body: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    head_hash: str
    first_bad_seq: int | None = None
    message: str = ""


def record_hash(seq: int, kind: str, ref: str, ts: str, prev_hash: str, body_text: str) -> str:
    h = hashlib.sha256()
    h.update(f"{seq}\n{kind}\n{ref}\n{ts}\n{prev_hash}\n".encode())
    h.update(body_text.encode("utf-8"))
    return h.hexdigest()


def encode_record(seq: int, kind: str, ref: str, ts: str, prev_hash: str,
                  body: dict[str, Any]) -> tuple[str, str]:
    """A record's stored text and its hash: all the work of an append before SQLite (a body
    value that is `Encoded` is not encoded again)."""
    text = canonical(body)
    return text, record_hash(seq, kind, ref, ts, prev_hash, text)


class AuditStore:
    def __init__(self, path: str | os.PathLike[str] = DEFAULT_PATH, *,
                 create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.exists():
            raise AuditError(f"{self.path}: no audit store here (nothing has been recorded yet)")
        try:
            create_private_file(self.path)
        except OSError as e:
            raise AuditError(f"{self.path}: cannot create the audit store: "
                             f"{e.strerror or e}") from e
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._db.executescript(_DDL)
            self._db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES('schema', ?)",
                             (SCHEMA_VERSION,))
            self.store_id, self.genesis = self._identity()
        except sqlite3.DatabaseError as e:
            raise AuditError(f"{self.path}: cannot open the audit store: {e}") from e
        self._held = False
        self._held_durable = False
        # While this connection holds the write transaction no other can append, so the head
        # is known without reading it, and so is every kind appended since the transaction
        # began (`_held_from`, the head then): kept here, forgotten when the hold ends.
        self._head: tuple[int, str] | None = None
        self._held_from = -1
        self._kind_seq: dict[str, int] = {}
        #: Write transactions committed with records in them (one fsync each): what group
        #: commit saves, counted for the service's metrics.
        self.commits = 0

    def _identity(self) -> tuple[str, str]:
        """The store's id, made once when the store is, and its genesis: the hash its first
        record follows, derived from the id, so a store rebuilt from scratch (a new id) can
        be told from the one a checkpoint signed. A store from before ids keeps GENESIS."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            rows = dict(self._db.execute("SELECT key, value FROM meta WHERE key IN "
                                         "('store_id', 'genesis')").fetchall())
            if "store_id" not in rows:
                store_id = uuid.uuid4().hex
                used = self._db.execute("SELECT 1 FROM records LIMIT 1").fetchone()
                genesis = GENESIS if used else hashlib.sha256(
                    f"fuggerbot audit store {store_id}".encode()).hexdigest()
                self._db.executemany("INSERT INTO meta(key, value) VALUES (?, ?)",
                                     [("store_id", store_id), ("genesis", genesis)])
                rows = {"store_id": store_id, "genesis": genesis}
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return str(rows["store_id"]), str(rows["genesis"])

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> AuditStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing ------------------------------------------------------------------------

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[None]:
        """Hold one write transaction: every append made inside commits at the end, together.

        Appends inside see each other (one connection) and keep their own all-or-nothing
        behaviour (each is a savepoint). The block commits what was appended even when it
        raises: those records describe steps that happened. `durable=False` commits without
        waiting for the disk (WAL with synchronous=NORMAL): the records survive the process
        being killed, not a power loss; for work that can be redone from its inputs, such as
        a replay, never for a live cycle, whose orders must follow durable records.
        """
        if self._held:
            raise AuditError(f"{self.path}: a transaction is already held")
        try:
            with held_write(self._db, durable=durable):
                self._held, self._held_durable = True, durable
                self._forget_head()
                try:
                    yield
                finally:
                    self._held = self._held_durable = False
                    self._forget_head()
        except sqlite3.DatabaseError as e:
            raise AuditError(f"{self.path}: could not record: {e}") from e
        self.commits += 1

    def durable_before_effect(self) -> None:
        """Called before something outside the store happens (an order sent to or cancelled
        at the broker): inside a durable held transaction, commit what was appended so far
        and go on in a new one, so the records an effect follows are never lost with a
        process killed after it. Outside one every append has committed already; a
        non-durable one (a replay) is redone from its inputs, with its broker's account."""
        if not (self._held and self._held_durable):
            return
        # Another process may append between the commit and the new transaction.
        self._forget_head()
        try:
            self._db.execute("COMMIT")
            self.commits += 1
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as e:
            raise AuditError(f"{self.path}: could not record: {e}") from e

    def _forget_head(self) -> None:
        self._head, self._held_from, self._kind_seq = None, -1, {}

    def _read_head(self) -> tuple[int, str]:
        """The last record's seq and hash (0 and the genesis for an empty store); read once
        per held transaction, then kept."""
        if self._held and self._head is not None:
            return self._head
        row = self._db.execute("SELECT seq, hash FROM records "
                               "ORDER BY seq DESC LIMIT 1").fetchone()
        head = (int(row[0]), str(row[1])) if row else (0, self.genesis)
        if self._held:
            self._head, self._held_from = head, head[0]
        return head

    def append(self, kind: str, ref: str, body: dict[str, Any]) -> Record:
        return self.append_many([(kind, ref, body)])[0]

    def append_once(self, kind: str, ref: str, body: dict[str, Any], *,
                    unless: Sequence[str]) -> Record | None:
        """Append unless a record about `ref` of a kind in `unless` exists, atomically across
        processes (the check and the append share one write transaction). None when refused:
        this is how an approval is decided exactly once."""
        records = self.append_many([(kind, ref, body)], unless=(ref, tuple(unless)))
        return records[0] if records else None

    def append_checked(self, ref: str, build: Callable[[list[Record]], Sequence[
            tuple[str, str, dict[str, Any]]]]) -> list[Record]:
        """Read every record about `ref` and append what `build` makes of them, in one write
        transaction: no other process appends in between, so a check made by `build` (say,
        that a quorum is not reached yet) still holds when its records are committed. An
        exception from `build` appends nothing and propagates."""
        return self.append_many((), check=(ref, build))

    def append_many(self, items: Sequence[tuple[str, str, dict[str, Any]]], *,
                    unless: tuple[str, tuple[str, ...]] | None = None,
                    check: tuple[str, Callable[[list[Record]], Sequence[
                        tuple[str, str, dict[str, Any]]]]] | None = None) -> list[Record]:
        """Append records in one transaction: all of them are committed, or none."""
        if not items and check is None:
            return []
        ts = format_utc(utc_now())
        out: list[Record] = []
        # Inside a held transaction each append is a savepoint, so a failed or refused one
        # leaves the others of the transaction as they were.
        begin, commit, undo = (("SAVEPOINT append", "RELEASE append",
                                ("ROLLBACK TO append", "RELEASE append")) if self._held else
                               ("BEGIN IMMEDIATE", "COMMIT", ("ROLLBACK",)))
        try:
            self._db.execute(begin)
            try:
                if unless is not None:
                    ref, kinds = unless
                    marks = ",".join("?" * len(kinds))
                    hit = self._db.execute(f"SELECT 1 FROM records WHERE ref = ? AND kind IN "
                                           f"({marks}) LIMIT 1", (ref, *kinds)).fetchone()
                    if hit:
                        for statement in undo:
                            self._db.execute(statement)
                        return []
                if check is not None:
                    items = check[1](list(self._rows(
                        "SELECT seq, kind, ref, ts, body, prev_hash, hash FROM records "
                        "WHERE ref = ? ORDER BY seq", (check[0],))))
                    if not items:
                        for statement in undo:
                            self._db.execute(statement)
                        return []
                seq, prev = self._read_head()
                rows = []
                appended: dict[str, int] = {}
                for kind, ref, body in items:
                    seq += 1
                    text, h = encode_record(seq, kind, ref, ts, prev, body)
                    rows.append((seq, kind, ref, ts, text, prev, h))
                    out.append(Record(seq, kind, ref, ts, body, prev, h))
                    appended[kind] = seq
                    prev = h
                self._db.executemany("INSERT INTO records(seq, kind, ref, ts, body, prev_hash, "
                                     "hash) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                self._db.execute("INSERT INTO head(id, seq, hash) VALUES (1, ?, ?) "
                                 "ON CONFLICT(id) DO UPDATE SET seq=excluded.seq, "
                                 "hash=excluded.hash", (seq, prev))
                self._db.execute(commit)
                if self._held:
                    self._head = (seq, prev)
                    self._kind_seq.update(appended)
                else:
                    self.commits += 1
            except BaseException:
                for statement in undo:
                    self._db.execute(statement)
                raise
        except sqlite3.DatabaseError as e:
            raise AuditError(f"{self.path}: could not record: {e}") from e
        return out

    def record_activation(self, policy_set: PolicySet, *, actor: str | None = None,
                          scope: str = "evaluation", run_id: str | None = None) -> str:
        """Record that `policy_set` is in force, with its full text, unless it already is.
        `scope`: "live" (what the live book trades under; changing it is authorised),
        "run" (a replay's, with its `run_id`) or "evaluation" (decisions only). Returns the
        set's hash."""
        if scope not in ("live", "run", "evaluation"):
            raise ValueError(f"unknown activation scope {scope!r}")
        latest = (self.latest("policy_activation") if scope == "evaluation"
                  else self.active(scope, run_id))
        if latest is not None and latest.ref == policy_set.hash:
            return policy_set.hash
        self.append("policy_activation", policy_set.hash,
                    {**activation_body(policy_set, actor), "scope": scope, "run_id": run_id})
        return policy_set.hash

    def active(self, scope: str = "live", run_id: str | None = None) -> Record | None:
        """The latest activation of `scope` (and run): for "live", the set the live book
        trades under. An activation recorded without a scope counts for none."""
        for r in self._rows("SELECT seq, kind, ref, ts, body, prev_hash, hash FROM records "
                            "WHERE kind = 'policy_activation' ORDER BY seq DESC"):
            if r.body.get("scope") == scope and r.body.get("run_id") == run_id:
                return r
        return None

    # --- reading ------------------------------------------------------------------------

    def _rows(self, sql: str, args: Iterable[Any] = ()) -> Iterator[Record]:
        for seq, kind, ref, ts, body, prev, h in self._db.execute(sql, tuple(args)):
            yield Record(seq, kind, ref, ts, json.loads(body), prev, h)

    def latest(self, kind: str, *, run_id: str | object | None = ...) -> Record | None:
        """The newest record of `kind`; with `run_id`, the newest whose body names that run
        (None: records of no run, i.e. of the live system)."""
        if run_id is ...:
            return next(self._rows("SELECT seq, kind, ref, ts, body, prev_hash, hash FROM "
                                   "records WHERE kind = ? ORDER BY seq DESC LIMIT 1", (kind,)),
                        None)
        for r in self._rows("SELECT seq, kind, ref, ts, body, prev_hash, hash FROM records "
                            "WHERE kind = ? ORDER BY seq DESC", (kind,)):
            if r.body.get("run_id") == run_id:
                return r
        return None

    def find(self, ref: str) -> list[Record]:
        """Every record about `ref` (a decision id, an order id, a policy-set hash), oldest
        first. Only the ref matches: an id that the code writes under again (an approval
        item, a token) must never resolve to some other record."""
        return list(self._rows("SELECT seq, kind, ref, ts, body, prev_hash, hash FROM records "
                               "WHERE ref = ? ORDER BY seq", (ref,)))

    def lookup(self, text: str) -> list[Record]:
        """What a person typed to see records: a ref, or failing that a record's seq number.
        For display only; never for deciding or writing."""
        rows = self.find(text)
        if not rows and text.isdigit():
            rows = list(self._rows("SELECT seq, kind, ref, ts, body, prev_hash, hash FROM "
                                   "records WHERE seq = ?", (int(text),)))
        return rows

    def refs_starting(self, prefix: str, limit: int = 10, *, kind: str | None = None
                      ) -> list[str]:
        """Up to `limit` distinct refs (of records of `kind`, if given) that start with
        `prefix`, in order: how a short id a person typed is resolved."""
        if not prefix:
            return []
        # A range on the ref index: LIKE would need its wildcards escaped in `prefix`.
        sql = "SELECT DISTINCT ref FROM records WHERE ref >= ? AND ref < ?"
        args: tuple[object, ...] = (prefix, prefix + "\U0010ffff")
        if kind is not None:
            sql, args = sql + " AND kind = ?", (*args, kind)
        return [ref for (ref,) in self._db.execute(sql + " ORDER BY ref LIMIT ?",
                                                   (*args, limit))]

    def activation(self, policy_hash: str) -> Record | None:
        return next(self._rows("SELECT seq, kind, ref, ts, body, prev_hash, hash FROM records "
                               "WHERE kind = 'policy_activation' AND ref = ? "
                               "ORDER BY seq DESC LIMIT 1", (policy_hash,)), None)

    def records(self, kind: str | None = None, *, limit: int | None = None,
                newest_first: bool = True) -> list[Record]:
        order = "DESC" if newest_first else "ASC"
        where = "WHERE kind = ?" if kind else ""
        args: list[Any] = [kind] if kind else []
        lim = ""
        if limit is not None:
            lim = "LIMIT ?"
            args.append(limit)
        return list(self._rows(f"SELECT seq, kind, ref, ts, body, prev_hash, hash FROM records "
                               f"{where} ORDER BY seq {order} {lim}", args))

    def records_since(self, seq: int, kinds: Sequence[str]) -> tuple[int, list[Record]]:
        """The head's seq and the records of `kinds` in (seq, head], oldest first: how a
        projection catches up. Inside a held transaction that began at or before `seq` and
        has appended none of `kinds` since, nothing needs reading."""
        if self._held and self._head is not None and 0 <= self._held_from <= seq and \
                all(self._kind_seq.get(k, 0) <= seq for k in kinds):
            return self._head[0], []
        head = self._read_head()[0]
        marks = ",".join("?" * len(kinds))
        return head, list(self._rows(f"SELECT seq, kind, ref, ts, body, prev_hash, hash FROM "
                                     f"records WHERE seq > ? AND seq <= ? AND kind IN "
                                     f"({marks}) ORDER BY seq", (seq, head, *kinds)))

    def iter_records(self, kind: str | None = None, *,
                     newest_first: bool = False) -> Iterator[Record]:
        """Every record (of `kind`), oldest first unless `newest_first`, read one at a time."""
        where = "WHERE kind = ?" if kind else ""
        order = "DESC" if newest_first else "ASC"
        yield from self._rows(f"SELECT seq, kind, ref, ts, body, prev_hash, hash FROM records "
                              f"{where} ORDER BY seq {order}", [kind] if kind else [])

    def hashes(self) -> list[str]:
        """Every record's hash, by seq (index 0 is record 1)."""
        return [h for (h,) in self._db.execute("SELECT hash FROM records ORDER BY seq")]

    def head_seq(self) -> int:
        row = self._db.execute("SELECT MAX(seq) FROM records").fetchone()
        return int(row[0] or 0)

    def kinds(self) -> set[str]:
        """The kinds of record this store holds."""
        return {k for (k,) in self._db.execute("SELECT DISTINCT kind FROM records")}

    def count(self, kind: str | None = None) -> int:
        if kind:
            row = self._db.execute("SELECT COUNT(*) FROM records WHERE kind = ?",
                                   (kind,)).fetchone()
        else:
            row = self._db.execute("SELECT COUNT(*) FROM records").fetchone()
        return int(row[0])

    def verify(self) -> VerifyResult:
        """Walk the chain from the first record; name the first record that was altered,
        removed or reordered."""
        expected_seq, prev, checked = 1, self.genesis, 0
        cursor = self._db.execute("SELECT seq, kind, ref, ts, body, prev_hash, hash FROM "
                                  "records ORDER BY seq")
        for seq, kind, ref, ts, body, prev_hash, h in cursor:
            if seq != expected_seq:
                return VerifyResult(False, checked, prev, expected_seq,
                                    f"record {expected_seq} is missing: removed"
                                    + (f" (records {expected_seq}..{seq - 1})"
                                       if seq - 1 > expected_seq else ""))
            if prev_hash != prev:
                return VerifyResult(False, checked, prev, seq,
                                    f"record {seq} ({kind} {ref}) does not follow record "
                                    f"{seq - 1}: removed, reordered or replaced")
            if record_hash(seq, kind, ref, ts, prev_hash, body) != h:
                return VerifyResult(False, checked, prev, seq,
                                    f"record {seq} ({kind} {ref}) was altered: its content no "
                                    "longer matches its hash")
            prev = h
            expected_seq += 1
            checked += 1
        head = self._db.execute("SELECT seq, hash FROM head WHERE id = 1").fetchone()
        if head is not None and (head[0] != checked or head[1] != prev):
            if head[0] > checked:
                return VerifyResult(False, checked, prev, checked + 1,
                                    f"records {checked + 1}..{head[0]} were removed from the "
                                    "end of the store")
            return VerifyResult(False, checked, prev, None,
                                "the store's head does not match its last record")
        return VerifyResult(True, checked, prev)


def activation_body(policy_set: PolicySet, actor: str | None) -> dict[str, Any]:
    return {
        "hash": policy_set.hash,
        "activated_by": actor or _user(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "policies": [
            {"kind": p.kind, "name": p.name, "version": p.version, "path": p.path,
             "hash": p.hash, "text": p.text}
            for p in policy_set.policies
        ],
    }


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
