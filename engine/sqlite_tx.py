"""One write transaction held across many calls, for the SQLite files FuggerBot writes."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress


@contextmanager
def held_write(conn: sqlite3.Connection, *, durable: bool) -> Iterator[None]:
    """`BEGIN IMMEDIATE` before the block and `COMMIT` after it, also when the block raises:
    what it wrote describes steps that happened. A failed commit is rolled back and raised.
    `durable=False` commits without waiting for the disk (WAL with synchronous=NORMAL): the
    writes survive the process being killed, not a power loss. sqlite3 errors propagate for
    the caller to name."""
    if not durable:
        conn.execute("PRAGMA synchronous=NORMAL")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            try:
                if conn.in_transaction:
                    conn.execute("COMMIT")
            except sqlite3.Error:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
    finally:
        conn.execute("PRAGMA synchronous=FULL")
