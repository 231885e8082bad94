"""A ref a person typed, resolved against a real audit store: the whole ref wins over a longer
one it starts, a unique start names its record, a start of several is refused with at most ten
candidates, and a kind narrows what counts."""

from __future__ import annotations

import pytest

from engine.audit.prefix import LISTED, AmbiguousRef, resolve
from engine.audit.store import AuditStore


@pytest.fixture
def filled(store: AuditStore) -> AuditStore:
    store.append_many([("decision", "ab12", {}), ("decision", "ab1234", {}),
                       ("order", "cd55", {}), ("approval_requested", "cd56", {}),
                       ("order", "gh1", {}), ("approval_requested", "gh12", {}),
                       *[("alert", f"ef{i:02d}", {}) for i in range(LISTED + 2)]])
    return store


def test_a_whole_ref_is_itself_even_when_it_starts_a_longer_one(filled: AuditStore) -> None:
    assert resolve(filled, "ab12") == "ab12"
    assert resolve(filled, "ab123") == "ab1234"
    assert resolve(filled, "ab12", kind="decision") == "ab12"


def test_a_kind_narrows_which_refs_a_start_can_name(filled: AuditStore) -> None:
    with pytest.raises(AmbiguousRef) as both:
        resolve(filled, "cd5")
    assert both.value.candidates == ["cd55", "cd56"]
    assert str(both.value).startswith("'cd5' is the start of more than one id; ")
    # A whole ref of another kind is only a start of this one's.
    assert resolve(filled, "gh1", kind="approval_requested") == "gh12"
    assert resolve(filled, "cd5", kind="approval_requested") == "cd56"
    assert resolve(filled, "cd55", kind="approval_requested") == "cd55"  # named nothing
    assert resolve(filled, "ab12", kind="order") == "ab12"
    assert resolve(filled, "zz") == "zz" and resolve(filled, "") == ""


def test_an_ambiguous_start_lists_ten_candidates_and_says_there_are_more(
        filled: AuditStore) -> None:
    with pytest.raises(AmbiguousRef) as refused:
        resolve(filled, "ef", kind="alert", what="alert")
    shown = [f"  ef{i:02d}" for i in range(LISTED)]
    assert str(refused.value) == ("'ef' is the start of more than one alert; give more of it:\n"
                                  + "\n".join(shown) + "\n  ...")
    assert refused.value.candidates == [f"ef{i:02d}" for i in range(LISTED + 1)]
    with pytest.raises(AmbiguousRef) as few:
        resolve(filled, "ab", what="decision")
    assert str(few.value) == ("'ab' is the start of more than one decision; give more of "
                              "it:\n  ab12\n  ab1234")


def test_exactly_ten_candidates_are_all_shown() -> None:
    ten = [f"r{i}" for i in range(LISTED)]
    assert str(AmbiguousRef("r", "id", ten)).endswith("\n  r9")
