"""Automatic checkpoints: every N records or T seconds, to a witness directory and the alert
sinks, so a copy of the store's state lives where whoever writes the store cannot reach."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from engine.audit.checkpoint import Checkpoint, latest_in, take, write
from engine.audit.store import AuditStore


class Witness:
    def __init__(self, store: AuditStore, key: Ed25519PrivateKey, directory: Path, *,
                 every_records: int = 1000, every: timedelta = timedelta(hours=1),
                 on_checkpoint: Callable[[Checkpoint, Path], None] | None = None) -> None:
        if every_records < 1 or every <= timedelta(0):
            raise ValueError("checkpoints need a positive record count and interval")
        self.store = store
        self.key = key
        self.directory = directory
        self.every_records = every_records
        self.every = every
        self.on_checkpoint = on_checkpoint
        self.last = latest_in(directory, store.store_id)
        self._last_at: datetime | None = None

    def due(self, now: datetime) -> bool:
        """Whether N records were appended since the last checkpoint, or T passed and some
        were (the first time records are seen starts the clock)."""
        seq = self.store.head_seq()
        done = self.last.seq if self.last is not None else 0
        if seq <= done:
            return False
        due = seq - done >= self.every_records or (
            self._last_at is not None and now - self._last_at >= self.every)
        if self._last_at is None:
            self._last_at = now
        return due

    def maybe(self, now: datetime) -> Checkpoint | None:
        """Checkpoint when one is due (see `due`); None otherwise."""
        return self.now(now) if self.due(now) else None

    def now(self, now: datetime) -> Checkpoint | None:
        """Checkpoint now, unless nothing was appended since the last one."""
        if self.store.head_seq() <= (self.last.seq if self.last is not None else 0):
            return None
        cp = take(self.store, self.key, now, self.last)
        path = write(cp, self.directory)
        self.last, self._last_at = cp, now
        if self.on_checkpoint is not None:
            self.on_checkpoint(cp, path)
        return cp
