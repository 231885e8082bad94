"""Decision ids and timestamps, made cheaply for every decision, stay what they were: ULID
text that sorts in the order ids were made, and the UTC text `format_utc` writes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.ids import SHORT_HASH, new_id, short
from engine.timeutil import TimestampError, format_utc, parse_utc, stamp

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def millis(text: str) -> int:
    value = 0
    for ch in text[:10]:
        value = value * 32 + CROCKFORD.index(ch)
    return value


#: Ids made in a process of their own: in this one, an earlier test may already have made an
#: id stamped ahead of the clock, which later ids never sort before.
_FRESH_IDS = """
import json, time
from engine.ids import SHORT_HASH, new_id, short
before = time.time_ns() // 1_000_000
ids = [new_id() for _ in range(3)]
print(json.dumps([before, ids, time.time_ns() // 1_000_000]))
"""


def test_an_id_is_ulid_text_whose_first_ten_characters_are_its_millisecond() -> None:
    proc = subprocess.run([sys.executable, "-c", _FRESH_IDS], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).resolve().parent.parent)
    before, ids, after = json.loads(proc.stdout)
    for i in ids:
        assert len(i) == 26 and set(i) <= set(CROCKFORD)
        assert before <= millis(i) <= after
    assert ids == sorted(ids) and len(set(ids)) == 3


def test_ids_never_sort_before_earlier_ones_even_when_the_clock_goes_back() -> None:
    made = [new_id(), new_id(5), new_id(), new_id(1), *(new_id() for _ in range(2000)),
            new_id(time.time_ns() // 1_000_000 - 60_000), new_id()]
    assert made == sorted(made)
    assert len(set(made)) == len(made)


def test_a_given_time_is_stamped_as_format_utc_writes_it() -> None:
    for when in (datetime(2008, 10, 1, 21, tzinfo=UTC),
                 datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC)):
        assert stamp(when) == (int(when.timestamp() * 1000), format_utc(when))
        assert stamp(when) == stamp(when)  # the remembered answer is the same answer


def test_now_is_stamped_in_utc_to_the_microsecond_and_agrees_with_its_milliseconds() -> None:
    before = datetime.now(UTC)
    ms, text = stamp()
    after = datetime.now(UTC)
    parsed = parse_utc(text)
    assert text.endswith("Z") and before <= parsed <= after
    assert abs(ms - parsed.timestamp() * 1000) < 1


@pytest.mark.parametrize("text", ["2024-01-02T21:00:00", "2024-01-02T21:00:00+01:00", "x"])
def test_a_refused_timestamp_is_refused_every_time(text: str) -> None:
    for _ in range(2):
        with pytest.raises(TimestampError):
            parse_utc(text)


def test_ids_made_in_one_millisecond_differ_within_their_short_form() -> None:
    """The short form tables show (SHORT_HASH characters) names one id of a busy process,
    even past the steps one millisecond holds, and the ids still sort in the order made."""
    made = [new_id(7_000_000) for _ in range(1500)]
    assert made == sorted(made)
    assert len({i[:SHORT_HASH] for i in made}) == len(made)
    assert len({i[:10] for i in made}) > 1  # a busy millisecond borrows the next one


def test_the_short_form_cuts_what_the_engine_made_and_keeps_what_a_person_gave() -> None:
    made = new_id()
    assert short(made) == made[:SHORT_HASH]
    assert short("ab" * 32) == "ab" * 6
    assert short("o-" + "0123456789ab" * 2) == "o-0123456789"
    for given in ("my-order-0000000000000000001", "SPY", "run-2024"):
        assert short(given) == given
