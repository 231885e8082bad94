"""How a policy problem names its place and the value it is about: a path in the document,
a value shown as its author wrote it, and the kind of value it is."""

from __future__ import annotations

from collections.abc import Mapping

from engine.policy.problems import Problem
from engine.policy.yamlsource import YamlDocument, position_of

#: Keys and list indices from the document's root to one node.
Path = tuple[str | int, ...]


def at(doc: YamlDocument, path: Path, message: str, *, key: bool = False) -> Problem:
    return Problem(position_of(doc.data, path, doc.path, key=key), message)


def show(v: object) -> str:
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 2**53:
        return f"an integer of {len(str(abs(v)))} digits"
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, str):
        return repr(str(v))
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return repr(float(v))
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, Mapping):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    return repr(v)


def type_name(v: object) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, Mapping):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    return type(v).__name__

