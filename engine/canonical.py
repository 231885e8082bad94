"""The canonical JSON text of what FuggerBot hashes and records: keys sorted, no spaces, text
as UTF-8 rather than escaped. A record's hash is over this text, so it is made in one place.

The encoder is built once: `json.dumps` with these options builds a new one on every call,
which costs as much as encoding a small record. A mapping that is encoded once for one hash
and recorded again (a decision's facts) carries its text (`Encoded`), and a record body
splices that text instead of encoding the mapping a second time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from json import encoder as _json_encoder
from typing import Any


def _no_default(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _make() -> Callable[[Any], str]:
    c_make = getattr(_json_encoder, "c_make_encoder", None)
    if c_make is None:  # a Python without the C accelerator: the same text, made slower
        slow = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return slow.encode
    # No circular-reference markers: a body is built by the engine, and a cycle in it still
    # fails (RecursionError) before anything is written.
    fast = c_make(None, _no_default, _json_encoder.encode_basestring, None, ":", ",", True,
                  False, True)
    return lambda value: "".join(fast(value, 0))


_encode = _make()


class Encoded(dict[str, Any]):
    """A mapping with its canonical text, made when it was made: spliced into a record body
    as it is. Read like any dict; encoded anywhere else like any dict."""

    __slots__ = ("text",)

    def __init__(self, items: Mapping[str, Any], text: str) -> None:
        super().__init__(items)
        self.text = text


def canonical(value: Any) -> str:
    """The canonical text of `value`; a top-level `Encoded` value of a mapping is spliced."""
    if isinstance(value, dict) and any(type(v) is Encoded for v in value.values()):
        parts = []
        for key in sorted(value):
            v = value[key]
            parts.append(f"{_encode(key)}:{v.text if type(v) is Encoded else _encode(v)}")
        return "{" + ",".join(parts) + "}"
    return _encode(value)


def encoded(value: Mapping[str, Any]) -> Encoded | None:
    """`value` with its canonical text, or None when it has none (a value JSON cannot
    write)."""
    try:
        return Encoded(value, _encode(dict(value)))
    except (TypeError, ValueError):
        return None
