"""Takes the credentials a sink was configured with out of any text about that sink.

A failed delivery's error text is written to the append-only audit store, where a secret can
never be removed again, and to logs. The text comes from the standard library, Apprise or the
sink itself, and quotes what it was given in whatever form it likes: `repr` of a str or of the
latin-1 bytes of a header (`b'Bearer ...\\n'`), JSON, percent-encoding, and escapes of escapes
when an exception's repr is formatted again. So redaction is by the configured values
themselves, in every such form, not by a pattern of what a secret looks like; and any run of
at least `MIN_FRAGMENT` characters of a form is masked too, so a quoted part of a secret (one
token of a header, a cut-off path) goes as well.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import quote, quote_plus, unquote, unquote_plus, urlsplit

MASK = "[REDACTED]"
#: The shortest run of a secret's characters that is masked on its own; a whole secret is
#: masked whatever its length (from `MIN_SECRET` up).
MIN_FRAGMENT = 6
#: Values shorter than this are not treated as secrets: masking every "1" or "on" would make
#: the messages unreadable and no credential is that short.
MIN_SECRET = 4
#: How many times the forms below are applied on top of each other.
_DEPTH = 2
# Joins the forms into one string searched in one call; a run containing it is never masked.
_SEPARATOR = "\x00"


def _latin1_bytes_repr(text: str) -> str:
    try:
        return repr(text.encode("latin-1"))[2:-1]
    except UnicodeEncodeError:
        return text


_FORMS: tuple[Callable[[str], str], ...] = (
    lambda s: repr(s)[1:-1],
    lambda s: ascii(s)[1:-1],
    lambda s: repr(s.encode("utf-8", "surrogatepass"))[2:-1],
    _latin1_bytes_repr,
    lambda s: json.dumps(s)[1:-1],
    lambda s: json.dumps(s, ensure_ascii=False)[1:-1],
    lambda s: quote(s, safe=""),
    lambda s: quote(s, safe="/:@"),
    quote_plus,
    unquote,
    unquote_plus,
    html.escape,
    lambda s: s.replace("\r", "\\r").replace("\n", "\\n"),
)


def _fold(text: str) -> str:
    # Case-insensitive matching (percent-escapes come in either case) that keeps every index.
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


def forms_of(secret: str) -> set[str]:
    """`secret` as it may be quoted: itself and its escaped, encoded and decoded forms, and
    those forms of each of them."""
    found = {secret}
    layer = {secret}
    for _ in range(_DEPTH):
        layer = {form(s) for s in layer for form in _FORMS} - found
        found |= layer
    return {f for f in found if f}


@dataclass(frozen=True)
class Redactor:
    """Masks every known secret, in any of its forms, in a text. Empty: changes nothing."""

    #: The folded forms of every secret, longest first, and the same joined for searching.
    forms: tuple[str, ...] = ()
    haystack: str = ""

    @classmethod
    def of(cls, secrets: Iterable[str]) -> Redactor:
        values = {s for s in secrets if isinstance(s, str) and len(s.strip()) >= MIN_SECRET}
        forms = {_fold(f) for s in values for f in forms_of(s)}
        ordered = tuple(sorted((f for f in forms if len(f) >= MIN_SECRET),
                               key=lambda f: (-len(f), f)))
        return cls(ordered, _SEPARATOR.join(ordered))

    def __add__(self, other: Redactor) -> Redactor:
        forms = tuple(sorted(set(self.forms) | set(other.forms), key=lambda f: (-len(f), f)))
        return Redactor(forms, _SEPARATOR.join(forms))

    def __bool__(self) -> bool:
        return bool(self.forms)

    def __call__(self, text: str) -> str:
        if not self.forms or not text:
            return text
        folded = _fold(text)
        hidden = [False] * len(text)
        for form in self.forms:
            start = folded.find(form)
            while start != -1:
                hidden[start:start + len(form)] = [True] * len(form)
                start = folded.find(form, start + 1)
        self._hide_fragments(folded, hidden)
        return _masked(text, hidden)

    def _hide_fragments(self, folded: str, hidden: list[bool]) -> None:
        i = 0
        while i <= len(folded) - MIN_FRAGMENT:
            length = MIN_FRAGMENT
            if not self._holds(folded[i:i + length]):
                i += 1
                continue
            while i + length < len(folded) and self._holds(folded[i:i + length + 1]):
                length += 1
            hidden[i:i + length] = [True] * length
            i += length

    def _holds(self, run: str) -> bool:
        return _SEPARATOR not in run and run in self.haystack


def _masked(text: str, hidden: list[bool]) -> str:
    out: list[str] = []
    for ch, secret in zip(text, hidden, strict=True):
        if not secret:
            out.append(ch)
        elif not out or out[-1] != MASK:
            out.append(MASK)
    return "".join(out)


def url_secrets(url: str, *, host_is_secret: bool = False) -> list[str]:
    """The parts of `url` that may hold a credential: user, password, path, query, fragment;
    for services whose "host" is a token (Apprise URLs), the whole URL after its scheme."""
    after_scheme = url.split("://", 1)[-1]
    found = [url, after_scheme] if host_is_secret else []
    # As written: urlsplit drops tabs and newlines, which error texts then quote escaped.
    authority, slash, rest = after_scheme.partition("/")
    found += [authority.rpartition("@")[0], slash + rest]
    try:
        parts = urlsplit(url)
        found += [parts.username or "", parts.password or "", parts.query, parts.fragment]
        if parts.path not in ("", "/"):
            found.append(parts.path)
    except ValueError:
        # Unreadable: all of it after the scheme may be a secret.
        found.append(url.split("://", 1)[-1])
    return [f for f in found if f]
