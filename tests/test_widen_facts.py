"""The wide history for scale measurements keeps every day's facts and its time order."""

from __future__ import annotations

import json

from examples.widen_facts import widen


def test_each_day_is_repeated_for_every_symbol_in_time_order() -> None:
    days = [{"ts": ts, "symbol": s, "price": p}
            for ts in ("2008-10-01T21:00:00Z", "2008-10-02T21:00:00Z")
            for s, p in (("SP500", 1.0), ("WTI", 2.0), ("NASDAQ", 3.0))]
    out = [json.loads(line) for line in widen(iter(json.dumps(d) for d in days), 5)]
    assert len(out) == 10
    assert [o["ts"] for o in out] == sorted(o["ts"] for o in out)
    first = {o["symbol"]: o["price"] for o in out[:5]}
    assert first == {"NASDAQ_00": 3.0, "SP500_01": 1.0, "WTI_02": 2.0, "NASDAQ_03": 3.0,
                     "SP500_04": 1.0}
