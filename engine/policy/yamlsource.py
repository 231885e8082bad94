"""Reading a policy file as YAML data that remembers where every node came from.

Round-trip loading keeps line and column of every key, value and item. A policy is data, so
tags, anchors/aliases (the door to alias bombs), merge keys (`<<`, a door to duplicate keys:
the merged value loses to a key written beside it, silently) and multi-document files are
refused before anything is built from the text.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    ScalarEvent,
)

from engine.policy.problems import PolicyError, Position, Problem

MAX_BYTES = 1024 * 1024
#: Nesting beyond this is refused before parsing: no file FuggerBot reads needs it, and deep
#: nesting makes parsing slow and validation recursive.
MAX_DEPTH = 40
#: Digits of one number, at most: thresholds and limits need a handful.
MAX_NUMBER_DIGITS = 100
#: What YAML 1.2 could resolve as an integer or a float (digits, signs, '_', '.', exponents,
#: 0x / 0o / 0b prefixes); anything else is a string whatever its length.
_NUMBER = re.compile(r"[-+]?(0[xob][0-9a-fA-F_]+|[0-9_.]+([eE][-+]?[0-9_]+)?)")


@dataclass(frozen=True)
class YamlDocument:
    path: str
    text: str
    data: Any


def read_policy_file(path: str) -> YamlDocument:
    """Read and parse one policy file; raises PolicyError with positions."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise PolicyError([Problem(Position(path, 1, 1), f"cannot read file: {e.strerror}")]) from e
    if len(raw) > MAX_BYTES:
        raise PolicyError([Problem(Position(path, 1, 1),
                                   f"file is larger than {MAX_BYTES // 1024} KiB; "
                                   "a policy this large is refused")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise PolicyError([Problem(Position(path, line, col), "file is not valid UTF-8")]) from e
    return parse_policy_text(path, text)


def parse_policy_text(path: str, text: str) -> YamlDocument:
    """Parse policy text; `path` only names the source in messages."""
    if len(text.encode("utf-8")) > MAX_BYTES:
        raise PolicyError([Problem(Position(path, 1, 1),
                                   f"policy text is larger than {MAX_BYTES // 1024} KiB")])
    refuse_deep_nesting(path, text)
    _refuse_unsafe_constructs(path, text)
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        data = yaml.load(io.StringIO(text))
    except DuplicateKeyError as e:
        raise PolicyError([_marked(path, e, _duplicate_message(e))]) from e
    except MarkedYAMLError as e:
        raise PolicyError([_marked(path, e, _yaml_message(e, text))]) from e
    except YAMLError as e:
        raise PolicyError([Problem(Position(path, 1, 1), f"YAML error: {e}")]) from e
    if data is None:
        raise PolicyError([Problem(Position(path, 1, 1), "file is empty: expected a policy")])
    return YamlDocument(path, text, data)


def refuse_deep_nesting(path: str, text: str) -> None:
    """A linear scan for flow brackets and block indentation deeper than MAX_DEPTH, before any
    parser sees the text: YAML and JSON parsers recurse, and slow down, on deep nesting. Every
    reader of a YAML or JSON file a person writes goes through it."""
    depth = 0
    quote = ""
    for n, line in enumerate(text.split("\n"), start=1):
        stripped = line.lstrip(" -")
        indent = len(line) - len(stripped)
        if stripped and not stripped.startswith("#") and indent > 2 * MAX_DEPTH:
            raise PolicyError([Problem(Position(path, n, indent + 1),
                                       f"nested more than {MAX_DEPTH} levels deep: "
                                       "the file is refused past that")])
        for col, ch in enumerate(line, start=1):
            if quote:
                if ch == quote:
                    quote = ""
            elif ch in "\"'":
                quote = ch
            elif ch == "#" and (col == 1 or line[col - 2] in " \t"):
                break
            elif ch in "[{":
                depth += 1
                if depth > MAX_DEPTH:
                    raise PolicyError([Problem(Position(path, n, col),
                                               f"nested more than {MAX_DEPTH} levels deep: "
                                               "the file is refused past that")])
            elif ch in "]}":
                depth = max(0, depth - 1)
        quote = "" if quote == "'" else quote


def _refuse_unsafe_constructs(path: str, text: str) -> None:
    problems: list[Problem] = []
    documents = 0
    try:
        for event in YAML(typ="rt").parse(io.StringIO(text)):
            mark = event.start_mark
            pos = Position(path, mark.line + 1, mark.column + 1)
            if isinstance(event, DocumentStartEvent):
                documents += 1
                if documents == 2:
                    problems.append(Problem(pos, "more than one YAML document: "
                                                 "write one policy per file"))
            elif isinstance(event, AliasEvent):
                problems.append(Problem(pos, f"YAML alias '*{event.anchor}' is not allowed in a "
                                             "policy: write the value out"))
            if isinstance(event, ScalarEvent):
                problems.extend(_long_number(event, pos))
            if isinstance(event, (ScalarEvent, CollectionStartEvent)):
                if _is_merge_key(event):
                    problems.append(Problem(pos, MERGE_KEY))
                if event.tag is not None and not _is_implicit(event):
                    problems.append(Problem(pos, f"YAML tag '{event.tag}' is not allowed: "
                                                 "a policy is plain data"))
                if event.anchor is not None:
                    problems.append(Problem(pos, f"YAML anchor '&{event.anchor}' is not allowed "
                                                 "in a policy: write the value out"))
            if len(problems) >= 50:
                break
    except MarkedYAMLError as e:
        raise PolicyError([_marked(path, e, _yaml_message(e, text))]) from e
    except YAMLError as e:
        raise PolicyError([Problem(Position(path, 1, 1), f"YAML error: {e}")]) from e
    if problems:
        raise PolicyError(problems)


def _long_number(event: ScalarEvent, pos: Position) -> list[Problem]:
    """A plain number with more digits than any policy needs is refused by its position
    before it is parsed: past 4,300 digits Python will not even convert it."""
    if event.style is not None or not _NUMBER.fullmatch(event.value):
        return []
    digits = sum(ch.isdigit() for ch in event.value)
    if digits <= MAX_NUMBER_DIGITS:
        return []
    return [Problem(pos, f"a number of {digits} digits: a number in a policy has at most "
                         f"{MAX_NUMBER_DIGITS}")]


MERGE_KEY = ("YAML merge key '<<' is not allowed: write every key out once (a key beside "
             "a merge silently overrides the merged one)")


def _is_merge_key(event: Any) -> bool:
    return isinstance(event, ScalarEvent) and event.style is None and event.value == "<<"


def refuse_merge_keys(path: str, text: str) -> None:
    """Refuse the merge key `<<` in any YAML a person writes (books, sink configs): like a
    duplicate key, it lets one value silently replace another. Syntax errors are left to the
    parser that reads the file next."""
    problems: list[Problem] = []
    try:
        for event in YAML(typ="rt").parse(io.StringIO(text)):
            if _is_merge_key(event):
                mark = event.start_mark
                problems.append(Problem(Position(path, mark.line + 1, mark.column + 1),
                                        MERGE_KEY))
    except YAMLError:
        pass
    if problems:
        raise PolicyError(problems)


def _is_implicit(event: Any) -> bool:
    implicit = event.implicit
    if isinstance(implicit, tuple):
        return bool(implicit[0] or implicit[1]) and event.tag is None
    return bool(implicit)


def _marked(path: str, e: MarkedYAMLError, message: str) -> Problem:
    mark = e.problem_mark or e.context_mark
    if mark is None:
        return Problem(Position(path, 1, 1), message)
    return Problem(Position(path, mark.line + 1, mark.column + 1), message)


#: An operator written bare after `op:`: YAML reads `>` as a folded block and `<`, `=` or `!`
#: at the start of a value as syntax, so the parser's own words do not say what to do.
_BARE_OPERATOR = re.compile(r"\bop:\s*(?P<op>[<>=!]+)")
#: What the parser says when a line is indented wrongly.
_INDENTATION = ("expected <block end>", "mapping values are not allowed",
                "could not find expected ':'", "did not find expected key",
                "did not find expected '-'", "expected a block")


def _yaml_message(e: MarkedYAMLError, source: str) -> str:
    problem = (e.problem or "").strip()
    context = (e.context or "").strip()
    if "\\t" in problem or "tab" in problem:
        return "tab character used for indentation: YAML indents with spaces"
    text = f"YAML syntax error: {problem}" if problem else "YAML syntax error"
    if context:
        text += f" ({context})"
    mark = e.problem_mark or e.context_mark
    lines = source.split("\n")
    line = lines[mark.line] if mark is not None and mark.line < len(lines) else ""
    bare = _BARE_OPERATOR.search(line)
    if bare is not None:
        return (f"{text}; quote the operator: write op: \"{bare['op']}\" (YAML reads a bare "
                f"{bare['op']} as syntax)")
    if mark is not None and any(k in f"{problem} {context}" for k in _INDENTATION):
        return (f"{text}; check the indentation at line {mark.line + 1}: the keys of one "
                "mapping start in the same column, a list's items at the same dash")
    return text


def _duplicate_message(e: DuplicateKeyError) -> str:
    problem = (e.problem or "").strip()
    return f"duplicate key: {problem}" if problem else "duplicate key"


def position_of(root: Any, path: tuple[str | int, ...], file: str, *,
                key: bool = False) -> Position:
    """The position of the node at `path` (or of its key when `key`), else of its nearest
    ancestor that has one."""
    node = root
    best = Position(file, 1, 1)
    for i, step in enumerate(path):
        last = i == len(path) - 1
        if isinstance(node, CommentedMap) and step in node:
            try:
                line, col = node.lc.key(step) if (key and last) else node.lc.value(step)
                if not last and isinstance(node[step], (CommentedMap, CommentedSeq)):
                    line, col = node.lc.key(step)
                best = Position(file, line + 1, col + 1)
            except (KeyError, TypeError, AttributeError):
                pass
            node = node[step]
        elif isinstance(node, CommentedSeq) and isinstance(step, int) and 0 <= step < len(node):
            try:
                line, col = node.lc.item(step)
                best = Position(file, line + 1, col + 1)
            except (KeyError, TypeError, AttributeError):
                pass
            node = node[step]
        else:
            break
    return best


def node_position(node: Any, file: str) -> Position | None:
    """The start of a mapping or sequence node."""
    if isinstance(node, (CommentedMap, CommentedSeq)):
        try:
            return Position(file, node.lc.line + 1, node.lc.col + 1)
        except (TypeError, AttributeError):
            return None
    return None


def plain(node: Any) -> Any:
    """YAML data as JSON-like values; an unquoted timestamp reads as the text it was."""
    if isinstance(node, Mapping):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, datetime):
        return node.isoformat().replace("+00:00", "Z")
    if isinstance(node, date):
        return node.isoformat()
    if node is None:
        return None
    return str(node)
