"""Files only their owner may read: the audit store and the paper account hold every decision,
order and policy text, and a database is created with the process's umask (usually
world-readable) unless it already exists when SQLite opens it."""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def create_private_file(path: Path, *, exclusive: bool = False) -> bool:
    """Create `path` empty with mode 0600 (and its missing directory with 0700) before SQLite
    opens it; SQLite gives its -wal and -shm files the same mode. True when created here; an
    existing file is left as it is, or with `exclusive` raises FileExistsError."""
    path.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, PRIVATE_FILE_MODE)
    except FileExistsError:
        if exclusive:
            raise
        return False
    os.close(fd)
    return True
