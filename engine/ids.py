"""Identifiers that sort by time: 48 bits of milliseconds then 80 bits that only grow within a
millisecond (the ULID layout), written in Crockford base32, whose alphabet is in ASCII order,
so ids made in one process sort in the order they were made.

An id is made for every decision, so it is made cheaply: the ten characters of the
millisecond are written once per millisecond, the sixteen of the 80 bits two characters
(ten bits) at a time from a table, and fresh randomness is drawn once per millisecond.
"""

from __future__ import annotations

import os
import re
import threading
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: Every pair of base32 characters, indexed by the ten bits they write.
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)
_MASK80 = (1 << 80) - 1
#: Ids made in one millisecond step their 11th and 12th characters (bits 70 to 79), so the
#: first SHORT_HASH characters of every id one process makes name it alone. A fresh draw has
#: its top bit clear: at least 512 ids fit in a millisecond before the next one is borrowed.
_STEP = 1 << 70
_lock = threading.Lock()
_last_ms = -1
_last_rand = 0
_prefix = ""


def new_id(now_ms: int | None = None) -> str:
    """A 26-character id; later calls in one process never sort before earlier ones."""
    global _last_ms, _last_rand, _prefix
    with _lock:
        ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        if ms <= _last_ms and _last_rand + _STEP <= _MASK80:
            _last_rand += _STEP
        else:
            # A new millisecond, or one so busy that its steps ran out: borrow the next one,
            # so that ids still sort in the order they were made.
            _last_ms = max(ms, _last_ms + 1)
            _last_rand = int.from_bytes(os.urandom(10), "big") >> 1
            _prefix = _time_text(_last_ms)
        r, prefix = _last_rand, _prefix
    p = _PAIRS
    return (prefix + p[r >> 70] + p[(r >> 60) & 1023] + p[(r >> 50) & 1023]
            + p[(r >> 40) & 1023] + p[(r >> 30) & 1023] + p[(r >> 20) & 1023]
            + p[(r >> 10) & 1023] + p[r & 1023])


def _time_text(ms: int) -> str:
    """The ten characters of a 48-bit millisecond count (two leading zero bits)."""
    return "".join(_CROCKFORD[(ms >> shift) & 31] for shift in range(45, -1, -5))


#: How many characters of a hash (a policy set's, a snapshot's facts') or of an id the engine
#: made (a decision's, an order's, an alert's) are shown to people, everywhere: `fugger audit
#: show`, `audit why` and `approvals approve` accept any unique prefix.
SHORT_HASH = 12
#: What the engine makes: a hash (64 hex), an id (26 base32), an order's client id ("o-" and
#: 24 hex). Anything else (a client's own order id, a symbol) is shown as it was given.
_MADE = re.compile(r"[0-9a-f]{32,}|[0-9A-HJKMNP-TV-Z]{26}|o-[0-9a-f]{24}")


def short(ref: str) -> str:
    """A ref as shown in tables and messages: its first SHORT_HASH characters if the engine
    made it, otherwise whole."""
    return ref[:SHORT_HASH] if _MADE.fullmatch(ref) else ref
