"""Identifiers that sort by time: 48 bits of milliseconds then 80 bits that only grow within a
millisecond (the ULID layout), written in Crockford base32, whose alphabet is in ASCII order,
so ids made in one process sort in the order they were made."""

from __future__ import annotations

import base64
import os
import threading
import time

_RFC = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TO_CROCKFORD = str.maketrans(_RFC, _CROCKFORD)
_MASK80 = (1 << 80) - 1
_lock = threading.Lock()
_last_ms = -1
_last_rand = 0


def new_id(now_ms: int | None = None) -> str:
    """A 26-character id; later calls in one process never sort before earlier ones."""
    global _last_ms, _last_rand
    with _lock:
        ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        if ms <= _last_ms:
            ms = _last_ms
            _last_rand = (_last_rand + 1) & _MASK80
        else:
            _last_rand = int.from_bytes(os.urandom(10), "big") >> 1
        _last_ms = ms
        value = (ms << 80) | _last_rand
    # 160 bits are exactly 32 base32 characters; the last 26 hold the 128-bit value with two
    # leading zero bits, which is the ULID text layout.
    return base64.b32encode(value.to_bytes(20, "big"))[6:].decode().translate(_TO_CROCKFORD)
