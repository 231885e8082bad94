"""A ref a person typed, resolved: the whole ref, or a unique start of one (the short form
tables show, engine.ids.short). Ambiguity is refused with the candidates, never guessed."""

from __future__ import annotations

from engine.audit.store import AuditStore

#: How many candidates an ambiguous start lists.
LISTED = 10


class AmbiguousRef(ValueError):
    """`text` starts more than one ref; the message lists them."""

    def __init__(self, text: str, what: str, candidates: list[str]) -> None:
        listing = "\n".join(f"  {c}" for c in candidates[:LISTED])
        more = "\n  ..." if len(candidates) > LISTED else ""
        super().__init__(f"{text!r} is the start of more than one {what}; give more of "
                         f"it:\n{listing}{more}")
        self.candidates = candidates


def resolve(store: AuditStore, text: str, *, kind: str | None = None, what: str = "id"
            ) -> str:
    """The ref of a record (of `kind`, if given) that `text` names. A text that names none
    is returned as it is, for the caller's own "no such" message."""
    if not text or store.refs_starting(text, 1, kind=kind) == [text]:
        return text
    refs = store.refs_starting(text, LISTED + 1, kind=kind)
    if len(refs) > 1:
        raise AmbiguousRef(text, what, refs)
    return refs[0] if refs else text
