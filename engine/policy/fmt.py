"""One canonical layout for policy files, comments kept: a ruamel.yaml round trip with fixed
indentation (mappings by 2, list items by 4 with the dash at 2), flow mappings and quoting
kept as written, no trailing spaces, one final newline.

A layout change must never change what a policy says: the formatted text is parsed again and
compared with the original, and a difference refuses the rewrite.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from engine.policy.yamlsource import parse_policy_text, plain

WIDTH = 100


class FormatError(Exception):
    pass


@dataclass(frozen=True)
class Formatted:
    path: str
    original: str
    text: str

    @property
    def changed(self) -> bool:
        return self.text != self.original


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = WIDTH
    return yaml


def format_text(path: str, text: str) -> str:
    """`text` in the canonical layout; raises PolicyError when it does not parse, and
    FormatError when the layout would change its meaning."""
    parse_policy_text(path, text)  # every refusal of the loader (duplicate keys, aliases, ...)
    yaml = _yaml()
    data = yaml.load(io.StringIO(text))
    _quote_operators(data)
    buf = io.StringIO()
    yaml.dump(data, buf)
    lines = [line.rstrip() for line in buf.getvalue().splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    result = "\n".join(lines) + "\n"
    if _meaning(path, result) != _meaning(path, text):
        raise FormatError(f"{path}: the canonical layout would change what the policy says; "
                          "left as it is")
    return result


def _quote_operators(node: Any) -> None:
    """Every `op:` value in double quotes: `>=` and `>` unquoted are YAML syntax errors or
    folded text, so a canonical file never teaches writing them bare."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "op" and isinstance(value, str):
                node[key] = DoubleQuotedScalarString(value)
            else:
                _quote_operators(value)
    elif isinstance(node, list):
        for item in node:
            _quote_operators(item)


def _meaning(path: str, text: str) -> Any:
    return plain(parse_policy_text(path, text).data)


def format_file(path: str) -> Formatted:
    with open(path, encoding="utf-8", newline="") as f:
        original = f.read()
    return Formatted(path, original, format_text(path, original))


def write_atomically(path: str, text: str) -> None:
    """Replace `path` with `text` in one step (a temporary file beside it, then a rename):
    a reader or a crash sees the old file or the new one, never half of one. The mode is
    kept."""
    target = Path(path)
    mode = target.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
