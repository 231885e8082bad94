"""The canonical encoding made once is the encoding: a record body that splices a mapping's
own text is the text of encoding it whole, and a decision's facts hash made from that text is
the hash made from the ASCII encoding, whatever the facts hold."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from engine.audit.store import encode_record
from engine.canonical import Encoded, canonical, encoded
from engine.facts import facts_hash

scalars = st.one_of(st.none(), st.booleans(), st.integers(),
                    st.floats(allow_nan=True, allow_infinity=True), st.text())
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(), inner, max_size=4)), max_leaves=20)
facts = st.dictionaries(st.text(), values, max_size=8)


def old_canonical(body: Any) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def old_facts_hash(raw: Any) -> str:
    text = json.dumps(raw, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@given(facts, st.dictionaries(st.text(), values, max_size=4))
def test_a_spliced_body_is_the_body_encoded_whole(raw: dict[str, Any],
                                                  rest: dict[str, Any]) -> None:
    enc = encoded(raw)
    assert enc is not None and enc == raw and enc.text == old_canonical(raw)
    body = {**rest, "facts": enc}
    assert canonical(body) == old_canonical({**rest, "facts": raw})
    assert encode_record(3, "decision", "r", "t", "p", body) == encode_record(
        3, "decision", "r", "t", "p", {**rest, "facts": dict(raw)})


@given(facts)
def test_the_facts_hash_from_the_canonical_text_is_the_facts_hash(raw: dict[str, Any]) -> None:
    assert facts_hash(raw, encoded(raw)) == old_facts_hash(raw)


def test_the_cases_where_the_two_encodings_part() -> None:
    for raw in ({"s": "caf\u00e9"}, {"s": "\x7f"}, {"s": "\u2028", "t": "\ud800"},
                {"k\x7f": 1.5}):
        assert facts_hash(raw, encoded(raw)) == old_facts_hash(raw)
    # A value JSON cannot write has no canonical text; its hash is made as it always was.
    odd = {"when": object()}
    assert encoded(odd) is None
    assert facts_hash(odd) == old_facts_hash(odd)


def test_an_encoded_mapping_reads_and_nests_like_a_dict() -> None:
    enc = encoded({"b": [1, 2], "a": {"x": None}})
    assert isinstance(enc, Encoded) and enc["a"] == {"x": None}
    assert canonical({"outer": {"inner": enc}}) == '{"outer":{"inner":{"a":{"x":null},"b":[1,2]}}}'
    assert canonical(enc) == enc.text == '{"a":{"x":null},"b":[1,2]}'
