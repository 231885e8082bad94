"""Builds sinks from a YAML file (see examples/sinks.example.yaml).

Every mistake in the file is a `SinkConfigError` whose message reads
`FILE:LINE:COL: sinks[N].key: what is wrong`, the position taken from the YAML parser's marks.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.nodes import MappingNode, Node, SequenceNode

from engine.monitoring.alert import Severity
from engine.monitoring.sinks import (
    AppriseSink,
    ConsoleSink,
    JsonlSink,
    SeverityFilter,
    Sink,
    WebhookSink,
)
from engine.policy.problems import PolicyError
from engine.policy.yamlsource import refuse_deep_nesting, refuse_merge_keys


class SinkConfigError(ValueError):
    """A sink configuration file that cannot be used; the message names file, line and key."""


_COMMON_KEYS = ("type", "name", "min_severity")
_TYPE_KEYS: dict[str, tuple[str, ...]] = {
    "console": ("stream",),
    "jsonl": ("path",),
    "webhook": ("url", "timeout_s", "headers"),
    "apprise": ("urls", "timeout_s"),
}
SINK_TYPES: tuple[str, ...] = tuple(_TYPE_KEYS)
_TOP_KEYS = ("sinks",)
_STREAMS = ("stderr", "stdout")

PathPart = str | int


class _Source:
    """The file being read and its node tree, to turn a path in the data into a position."""

    def __init__(self, file: Path, root: Node | None) -> None:
        self.file = file
        self.root = root

    def error(
        self, path: tuple[PathPart, ...], message: str, *, at_key: bool = False
    ) -> SinkConfigError:
        label = _label(path)
        where = self._position(path, at_key=at_key)
        prefix = f"{self.file}:{where}" if where else f"{self.file}"
        return SinkConfigError(f"{prefix}: {label + ': ' if label else ''}{message}")

    def _position(self, path: tuple[PathPart, ...], *, at_key: bool) -> str:
        node = self.root
        if node is None:
            return ""
        for i, part in enumerate(path):
            child = _child(node, part, key=at_key and i == len(path) - 1)
            if child is None:
                break
            node = child
        mark = node.start_mark
        return f"{mark.line + 1}:{mark.column + 1}"


def load_sinks(path: str | os.PathLike[str], *, base_dir: Path | None = None) -> list[Sink]:
    """The sinks a YAML file configures, each wrapped in a `SeverityFilter` if it has one.

    Relative `jsonl` paths are taken from `base_dir` (default: the current directory).
    """
    file = Path(path)
    text = _read(file)
    try:
        refuse_deep_nesting(str(file), text)
        refuse_merge_keys(str(file), text)
    except PolicyError as exc:
        raise SinkConfigError("\n".join(str(problem) for problem in exc.problems)) from None
    data, root = _parse(file, text)
    return _build_sinks(data, _Source(file, root), base_dir)


def _build_sinks(data: object, source: _Source, base_dir: Path | None) -> list[Sink]:
    if not isinstance(data, Mapping):
        what = "empty" if data is None else f"a {_yaml_type(data)}"
        raise source.error((), f"the file is {what}; expected a mapping with a 'sinks' list")
    for key in data:
        if key not in _TOP_KEYS:
            raise source.error(
                (str(key),), f"unknown key{_did_you_mean(key, _TOP_KEYS)}", at_key=True
            )
    if "sinks" not in data:
        raise source.error((), "missing 'sinks': the list of sinks to send alerts to")
    items = data["sinks"]
    if not isinstance(items, list):
        raise source.error(("sinks",), f"must be a list of sinks, got a {_yaml_type(items)}")
    if not items:
        raise source.error(("sinks",), "is empty; configure at least one sink")

    explicit = [item.get("name") for item in items if isinstance(item, Mapping)]
    taken: set[str] = set()
    sinks: list[Sink] = []
    for index, item in enumerate(items):
        sink = _build_one(item, ("sinks", index), source, base_dir, taken, explicit)
        taken.add(sink.name)
        sinks.append(sink)
    return sinks


def _build_one(
    item: object,
    path: tuple[PathPart, ...],
    source: _Source,
    base_dir: Path | None,
    taken: set[str],
    explicit: list[object],
) -> Sink:
    if not isinstance(item, Mapping):
        raise source.error(path, f"must be a mapping with a 'type', got a {_yaml_type(item)}")
    if "type" not in item:
        raise source.error(path, f"missing 'type' (one of {', '.join(SINK_TYPES)})")
    kind = item["type"]
    if not isinstance(kind, str) or kind not in _TYPE_KEYS:
        raise source.error(
            (*path, "type"),
            f"unknown sink type {kind!r}{_did_you_mean(kind, SINK_TYPES)}"
            f" (one of {', '.join(SINK_TYPES)})",
        )
    allowed = _COMMON_KEYS + _TYPE_KEYS[kind]
    for key in item:
        if key not in allowed:
            raise source.error(
                (*path, str(key)),
                f"unknown key for a {kind} sink{_did_you_mean(key, allowed)}"
                f" (allowed: {', '.join(allowed)})",
                at_key=True,
            )

    name = _name(item, path, source, kind, taken, explicit)
    sink = _BUILDERS[kind](_Fields(item, path, source, kind), name, base_dir)
    if "min_severity" in item:
        try:
            return SeverityFilter(sink, Severity.parse(item["min_severity"]))
        except ValueError as exc:
            raise source.error((*path, "min_severity"), str(exc)) from None
    return sink


def _name(
    item: Mapping[Any, object],
    path: tuple[PathPart, ...],
    source: _Source,
    kind: str,
    taken: set[str],
    explicit: list[object],
) -> str:
    if "name" in item:
        name = item["name"]
        if not isinstance(name, str) or not name.strip():
            raise source.error((*path, "name"), f"must be a non-empty string, got {name!r}")
        if name in taken:
            raise source.error((*path, "name"), f"another sink is already named {name!r}")
        return name
    candidate, n = kind, 1
    while candidate in taken or candidate in explicit:
        n += 1
        candidate = f"{kind}-{n}"
    return candidate


class _Fields:
    """Typed access to one sink's keys; every failure names the key and its position."""

    def __init__(
        self, item: Mapping[Any, object], path: tuple[PathPart, ...], source: _Source, kind: str
    ) -> None:
        self.item = item
        self.path = path
        self.source = source
        self.kind = kind

    def error(self, key: str, message: str) -> SinkConfigError:
        return self.source.error((*self.path, key), message)

    def required_str(self, key: str) -> str:
        if key not in self.item:
            raise self.source.error(self.path, f"missing '{key}' (required for a {self.kind} sink)")
        value = self.item[key]
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"must be a non-empty string, got {value!r}")
        return value

    def timeout(self, default: float) -> float:
        value = self.item.get("timeout_s", default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise self.error("timeout_s", f"must be a number of seconds above 0, got {value!r}")
        return float(value)

    def build(self, key: str, make: Callable[[], Sink]) -> Sink:
        try:
            return make()
        except ValueError as exc:
            raise self.error(key, str(exc)) from None


def _console(f: _Fields, name: str, base_dir: Path | None) -> Sink:
    stream = f.item.get("stream", "stderr")
    if stream not in _STREAMS:
        raise f.error("stream", f"must be one of {', '.join(_STREAMS)}, got {stream!r}")
    return ConsoleSink(sys.stdout if stream == "stdout" else None, name=name)


def _jsonl(f: _Fields, name: str, base_dir: Path | None) -> Sink:
    path = Path(f.required_str("path")).expanduser()
    if not path.is_absolute():
        path = (base_dir if base_dir is not None else Path.cwd()) / path
    return JsonlSink(path, name=name)


def _webhook(f: _Fields, name: str, base_dir: Path | None) -> Sink:
    url = f.required_str("url")
    timeout_s = f.timeout(5.0)
    headers = f.item.get("headers", {})
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise f.error("headers", "must be a mapping of header names to string values")
    return f.build("url", lambda: WebhookSink(url, timeout_s, dict(headers), name=name))


def _apprise(f: _Fields, name: str, base_dir: Path | None) -> Sink:
    if "urls" not in f.item:
        raise f.source.error(f.path, "missing 'urls' (required for an apprise sink)")
    urls = f.item["urls"]
    if not isinstance(urls, list) or not urls:
        raise f.error("urls", "must be a non-empty list of Apprise URLs")
    for i, url in enumerate(urls):
        if not isinstance(url, str) or not url.strip():
            raise f.source.error((*f.path, "urls", i), f"must be a URL string, got {url!r}")
    timeout_s = f.timeout(8.0)
    return f.build("urls", lambda: AppriseSink(list(urls), timeout_s, name=name))


_BUILDERS: dict[str, Callable[[_Fields, str, Path | None], Sink]] = {
    "console": _console,
    "jsonl": _jsonl,
    "webhook": _webhook,
    "apprise": _apprise,
}


def _read(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SinkConfigError(f"{file}: sink config file not found") from None
    except IsADirectoryError:
        raise SinkConfigError(f"{file}: is a directory, not a sink config file") from None
    except UnicodeDecodeError as exc:
        raise SinkConfigError(f"{file}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise SinkConfigError(f"{file}: cannot read sink config: {exc.strerror}") from None


def _parse(file: Path, text: str) -> tuple[object, Node | None]:
    yaml = YAML(typ="safe")
    try:
        data = yaml.load(text)
        root: Node | None = yaml.compose(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        if isinstance(exc, DuplicateKeyError):
            # The parser quotes both values, and a sink's values are its credentials.
            problem = _duplicate_key(problem)
        raise SinkConfigError(f"{file}{where}: YAML error: {problem}") from None
    except Exception as exc:
        raise SinkConfigError(f"{file}: YAML error: {exc}") from None
    return data, root


def _duplicate_key(problem: str) -> str:
    key = re.match(r'found duplicate key "(.*?)" with value', problem)
    return f"duplicate key {key.group(1)!r}" if key else "duplicate key"


def _child(node: Node, part: PathPart, *, key: bool) -> Node | None:
    if isinstance(node, MappingNode) and isinstance(part, str):
        for k, v in node.value:
            if getattr(k, "value", None) == part:
                found: Node = k if key else v
                return found
    if isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        child: Node = node.value[part]
        return child
    return None


def _label(path: tuple[PathPart, ...]) -> str:
    label = ""
    for part in path:
        label += f"[{part}]" if isinstance(part, int) else (f".{part}" if label else part)
    return label


def _did_you_mean(value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        return ""
    close = difflib.get_close_matches(value, choices, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _yaml_type(value: object) -> str:
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return type(value).__name__
