"""Nearest names: what a misspelt fact, rule id, kind or option value most likely meant.

One place for "did you mean", so a fact in a snapshot, a rule id on the command line and a
record kind are all suggested the same way.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def nearest(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """The known names closest to `name`, best first: close spellings, else names that
    contain it or that it contains."""
    choices = list(dict.fromkeys(known))
    close = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if close:
        return close
    if not name:
        return []
    return [k for k in choices if name in k or k in name][:n]


def did_you_mean(name: str, known: Iterable[str], n: int = 3) -> str:
    """'did you mean A or B?' for the nearest known names, or '' when none is near."""
    close = nearest(name, known, n)
    if not close:
        return ""
    if len(close) == 1:
        return f"did you mean {close[0]}?"
    return f"did you mean {', '.join(close[:-1])} or {close[-1]}?"


def unknown_name(what: str, name: str, known: Iterable[str]) -> str:
    """'unknown WHAT 'NAME'; did you mean ...? (known: ...)' for a name not among `known`."""
    choices = sorted(set(known))
    hint = did_you_mean(name, choices)
    listing = ", ".join(choices) if choices else "none"
    return (f"unknown {what} {name!r}" + (f"; {hint}" if hint else "")
            + f" (known: {listing})")
