"""Everything a command shows is plain text: the one place output is made safe for a terminal.

Symbols, rule ids, reasons and error texts come from files someone else wrote. Shown through
Rich they would be read as markup (`[/]` crashes, `[link=...]` makes a link) and raw control
characters would reach the terminal (an ESC sequence recolours it, moves the cursor or sets the
window title; a newline fakes a line of output). So the consoles here never read markup or
emoji codes and show every control character as a visible escape; styling is only ever applied
by the code, through `styled`.
"""

from __future__ import annotations

import sys
import unicodedata
from typing import TextIO

from rich.console import Console, HighlighterType, JustifyMethod, OverflowMethod
from rich.style import Style
from rich.text import Text

#: Unicode categories shown escaped: controls (C0, DEL, C1), format characters (bidirectional
#: overrides, zero-width characters), line and paragraph separators, lone surrogates.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def plain(value: object) -> str:
    """`value` as text with every control or invisible formatting character made visible
    (`\\x1b`, `\\n`, `\\u202e`); markup needs no escaping because nothing here reads it."""
    text = value if isinstance(value, str) else str(value)
    if text.isascii() and text.isprintable():
        return text
    return "".join(
        _escape(ch) if unicodedata.category(ch) in _UNSAFE_CATEGORIES else ch for ch in text
    )


def styled(*parts: str | tuple[str, str | Style] | Text) -> Text:
    """Text made of `text` or `(text, style)` pieces, each shown as `plain`; a `Text` piece is
    the code's own (a line break inside a table cell, say) and is kept as it is."""
    text = Text()
    for part in parts:
        if isinstance(part, Text):
            text.append(part)
        elif isinstance(part, tuple):
            text.append(plain(part[0]), style=part[1])
        else:
            text.append(plain(part))
    return text


class PlainConsole(Console):
    """A Rich console that renders every string as plain text, in tables and titles too."""

    def __init__(self, *, stderr: bool = False, width: int | None = None) -> None:
        super().__init__(stderr=stderr, width=width, markup=False, emoji=False, highlight=False)

    def render_str(
        self,
        text: str,
        *,
        style: str | Style = "",
        justify: JustifyMethod | None = None,
        overflow: OverflowMethod | None = None,
        emoji: bool | None = None,
        markup: bool | None = None,
        highlight: bool | None = None,
        highlighter: HighlighterType | None = None,
    ) -> Text:
        # Every string Rich is given (printed, a table cell, a title) comes through here, so a
        # caller's `markup=True` cannot turn input into markup either.
        return super().render_str(
            plain(text), style=style, justify=justify, overflow=overflow,
            emoji=False, markup=False, highlight=False,
        )


def write_lines(text: object, stream: TextIO | None = None) -> None:
    """Write `text` line by line for output that does not go through a console: each line the
    code separated with a newline stays one line, and is shown as `plain`."""
    target = stream if stream is not None else sys.stdout
    lines = str(text).split("\n")
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()  # the text's own final newline
    for line in lines:
        target.write(plain(line) + "\n")
