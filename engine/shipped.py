"""Files shipped with FuggerBot (schemas, the default policies, the sample history): inside
the installed package (engine/_data), or beside the sources in a checkout."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent
_ROOTS = (_HERE / "_data", _HERE.parent)


def shipped(relative: str) -> Path | None:
    """Where the shipped file or directory `relative` (e.g. 'policies') is, or None."""
    for root in _ROOTS:
        candidate = root / relative
        if candidate.exists():
            return candidate
    return None
