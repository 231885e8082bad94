"""Identifiers that sort by time: 48 bits of milliseconds then 80 bits that only grow within a
millisecond (the ULID layout), written in Crockford base32, whose alphabet is in ASCII order,
so ids made in one process sort in the order they were made.

An id is made for every decision, so it is made cheaply: the ten characters of the
millisecond are written once per millisecond, the sixteen of the 80 bits two characters
(ten bits) at a time from a table, and fresh randomness is drawn once per millisecond.
"""

from __future__ import annotations

import os
import threading
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: Every pair of base32 characters, indexed by the ten bits they write.
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)
_MASK80 = (1 << 80) - 1
_lock = threading.Lock()
_last_ms = -1
_last_rand = 0
_prefix = ""


def new_id(now_ms: int | None = None) -> str:
    """A 26-character id; later calls in one process never sort before earlier ones."""
    global _last_ms, _last_rand, _prefix
    with _lock:
        ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        if ms <= _last_ms:
            _last_rand = (_last_rand + 1) & _MASK80
        else:
            _last_rand = int.from_bytes(os.urandom(10), "big") >> 1
            _last_ms = ms
            _prefix = _time_text(ms)
        r, prefix = _last_rand, _prefix
    p = _PAIRS
    return (prefix + p[r >> 70] + p[(r >> 60) & 1023] + p[(r >> 50) & 1023]
            + p[(r >> 40) & 1023] + p[(r >> 30) & 1023] + p[(r >> 20) & 1023]
            + p[(r >> 10) & 1023] + p[r & 1023])


def _time_text(ms: int) -> str:
    """The ten characters of a 48-bit millisecond count (two leading zero bits)."""
    return "".join(_CROCKFORD[(ms >> shift) & 31] for shift in range(45, -1, -5))


#: How many characters of a hash (a policy set's, a snapshot's facts', a record's) are shown
#: to people, everywhere; `fugger audit show` and `audit why` accept any unique prefix.
SHORT_HASH = 12
_HEX = frozenset("0123456789abcdef")


def short(ref: str) -> str:
    """A ref as shown in tables and messages: a hash cut to SHORT_HASH characters; an id whole
    (its first ten characters are a time, shared by the ids made in one millisecond, so no
    shorter form of it names one record)."""
    if len(ref) > SHORT_HASH and len(ref) >= 32 and set(ref) <= _HEX:
        return ref[:SHORT_HASH]
    return ref
