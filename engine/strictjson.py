"""JSON text decoded without guesses: a key given twice keeps every value, an integer too long
to convert and a string that is not text are refused, never crash a later step.

Python's `json` keeps the last of repeated keys, converts integers until the interpreter's
digit limit turns the conversion into a ValueError, and lets `"\\ud800"` through as half of a
surrogate pair that no UTF-8 writer (SQLite, a terminal) accepts.
"""

from __future__ import annotations

import json
import re
from typing import Any

from engine.facts import Duplicated

#: The longest integer read: Python's own limit on converting digits to an int.
MAX_INT_DIGITS = 4300
_SURROGATE = re.compile("[\ud800-\udfff]")


class JsonRefused(ValueError):
    """Valid JSON syntax holding something FuggerBot does not read; the message says what."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key not in out:
            out[key] = value
            continue
        seen = out[key]
        out[key] = Duplicated([*seen, value]) if isinstance(seen, Duplicated) else \
            Duplicated([seen, value])
    return out


def _int(digits: str) -> int:
    n = len(digits.lstrip("-"))
    if n > MAX_INT_DIGITS:
        raise JsonRefused(f"an integer of {n} digits; numbers longer than {MAX_INT_DIGITS} "
                          "digits are refused")
    return int(digits)


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_int=_int)


def raw_decode(text: str, pos: int = 0) -> tuple[Any, int]:
    """The JSON value starting at `text[pos]` and where it ends. Raises JSONDecodeError,
    JsonRefused, or RecursionError for nesting deeper than the interpreter's stack."""
    value, end = _DECODER.raw_decode(text, pos)
    if "\\u" in text[pos:end]:  # only an escape can make a lone surrogate
        _refuse_surrogates(value)
    return value, end


def loads(text: str) -> Any:
    """One JSON document, as `raw_decode` reads values; only white space may follow it."""
    start = len(text) - len(text.lstrip(" \t\r\n"))
    value, end = raw_decode(text, start)
    if text[end:].strip(" \t\r\n"):
        rest = len(text) - len(text[end:].lstrip(" \t\r\n"))
        raise json.JSONDecodeError("Extra data", text, rest)
    return value


def _refuse_surrogates(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found = _SURROGATE.search(item)
            if found:
                raise JsonRefused(f"the string {item[:40]!r} holds "
                                  f"\\u{ord(found.group()):04x}, half of a UTF-16 surrogate "
                                  "pair: it is not text")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
