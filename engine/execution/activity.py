"""What the order and book facts read besides the order: the recent execution log (orders sent,
fills) and the equity marks (start of day, peak). Both are kept in memory for a run and
rebuilt from the audit store for the live system, so a replay and a live step agree.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple, TypeVar

from engine.audit.store import AuditStore
from engine.execution.records import ORDER
from engine.timeutil import format_utc, parse_utc

#: The kind of an equity mark: the book's equity at the start of a cycle or a manual order.
MARK = "equity_mark"
#: How far back the execution log looks; `duplicate_order_seconds` says this when it finds
#: nothing.
LOOK_BACK = timedelta(days=1)
#: Records read back from the store at most, newest first, to rebuild the execution log.
_MAX_LOG_RECORDS = 20_000

K = TypeVar("K")


@dataclass(frozen=True)
class Sent:
    at: datetime
    symbol: str
    side: str
    shares: int


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
_LOOK_BACK_US = LOOK_BACK // _MICRO
#: How often the log forgets what left the look-back (see `ExecutionLog._forget`).
_FORGET_EVERY_US = timedelta(minutes=1) // _MICRO
_MINUTE_US = timedelta(minutes=1) // _MICRO
_SECOND_US = timedelta(seconds=1) // _MICRO


def _micros(at: datetime) -> int:
    """`at` in whole microseconds since the epoch: exact (a datetime has no finer unit), so
    the edges of a window are exact too."""
    return (at - _EPOCH) // _MICRO


def _within(times: Sequence[int], now: int, window: int) -> int:
    """How many of the sorted `times` fall in (now - window, now]."""
    return bisect_right(times, now) - bisect_right(times, now - window)


def _forget_before(by_key: dict[K, list[int]], oldest: int) -> dict[K, list[int]]:
    kept = {}
    for key, times in by_key.items():
        del times[:bisect_left(times, oldest)]
        if times:
            kept[key] = times
    return kept


class Recent(NamedTuple):
    """Orders sent in the last minute and second, fills of the symbol in the last minute, and
    seconds since the same order (None: none in the look-back); the order itself not counted."""

    sent_last_minute: int
    sent_last_second: int
    fills_last_minute: int
    seconds_since_same: float | None


class ExecutionLog:
    """Orders sent and fills inside the look-back window, kept sorted by time (overall, per
    symbol, side and size, and per symbol), so that every window an order's facts read is two
    binary searches, however busy the book has been."""

    def __init__(self) -> None:
        self._sent: list[int] = []
        #: (symbol, side, shares) -> when orders of exactly that were sent.
        self._same: dict[tuple[str, str, int], list[int]] = {}
        self._fills: dict[str, list[int]] = {}
        self._next_forget: int | None = None

    def note_sent(self, at: datetime, symbol: str, side: str, shares: int) -> None:
        t = _micros(at)
        insort(self._sent, t)
        insort(self._same.setdefault((symbol, side, shares), []), t)
        self._forget(t)

    def note_fill(self, at: datetime, symbol: str) -> None:
        t = _micros(at)
        insort(self._fills.setdefault(symbol, []), t)
        self._forget(t)

    def _forget(self, latest: int) -> None:
        """Drop what is older than the look-back before `latest`, at most once a minute: every
        window counts only what lies inside it and the duplicate check ages what it finds, so
        forgetting a little late changes no answer, only the memory held."""
        if self._next_forget is not None and latest < self._next_forget:
            return
        self._next_forget = latest + _FORGET_EVERY_US
        oldest = latest - _LOOK_BACK_US
        del self._sent[:bisect_left(self._sent, oldest)]
        self._same = _forget_before(self._same, oldest)
        self._fills = _forget_before(self._fills, oldest)

    def sent_within(self, now: datetime, window: timedelta) -> int:
        """Orders sent in the `window` up to `now` (an order at exactly now - window is out,
        one after now is not counted)."""
        return _within(self._sent, _micros(now), window // _MICRO)

    def fills_within(self, symbol: str, now: datetime, window: timedelta) -> int:
        """Fills of `symbol` in the `window` up to `now`, with the same edges."""
        return _within(self._fills.get(symbol, ()), _micros(now), window // _MICRO)

    def seconds_since_same(self, symbol: str, side: str, shares: int,
                           now: datetime) -> float | None:
        """Seconds since the latest order sent with this symbol, side and shares at or before
        `now`; None when there is none in the look-back."""
        return self._since_same((symbol, side, shares), _micros(now))

    def _since_same(self, key: tuple[str, str, int], now: int) -> float | None:
        times = self._same.get(key, ())
        i = bisect_right(times, now)
        if i == 0 or now - times[i - 1] > _LOOK_BACK_US:
            return None
        return (now - times[i - 1]) / 1e6

    def recent(self, symbol: str, side: str, shares: int, now: datetime) -> Recent:
        """What the log says of an order of `shares` `symbol` on `side` at `now`: the same
        windows as `sent_within`, `fills_within` and `seconds_since_same`, read at once."""
        n = _micros(now)
        fills = self._fills.get(symbol, ())
        return Recent(_within(self._sent, n, _MINUTE_US), _within(self._sent, n, _SECOND_US),
                      _within(fills, n, _MINUTE_US), self._since_same((symbol, side, shares), n))


    @classmethod
    def from_store(cls, store: AuditStore, run_id: str | None, now: datetime) -> ExecutionLog:
        """The log of `run_id` (None: the live system) as the store holds it."""
        sent: list[Sent] = []
        fills: list[tuple[datetime, str]] = []
        filled: set[str] = set()
        for r in store.records(ORDER, limit=_MAX_LOG_RECORDS):
            b = r.body
            if b.get("run_id") != run_id:
                continue
            try:
                at = parse_utc(b.get("ts"))
            except ValueError:
                continue
            if now - at > LOOK_BACK:
                continue  # records follow their append order, not their ts: read on
            if b.get("status") == "submitting":
                sent.append(Sent(at, str(b.get("symbol")), str(b.get("side")),
                                 int(b.get("shares") or 0)))
            elif b.get("status") == "filled" and r.ref not in filled:
                # An order fills once: a fill recorded twice (by a cycle and by a cancellation
                # that found it filled) is one execution.
                filled.add(r.ref)
                fills.append((at, str(b.get("symbol"))))
        log = cls()
        # Oldest first: the log forgets relative to the latest it has seen.
        for s in sorted(sent, key=lambda s: s.at):
            log.note_sent(s.at, s.symbol, s.side, s.shares)
        for at, symbol in sorted(fills):
            log.note_fill(at, symbol)
        return log


class EquityMarks:
    """The equity of the book at each cycle: where the day started and the peak since trading
    was last resumed (a person who resumes after a drawdown accepts today's level)."""

    def __init__(self) -> None:
        self._day: date | None = None
        self._day_open: float | None = None
        self._prev_close: float | None = None
        self._last: float | None = None
        self._peak: float | None = None

    def mark(self, at: datetime, equity: float) -> None:
        day = _utc_day(at)
        if day != self._day:
            self._prev_close = self._last
            self._day = day
            self._day_open = equity
        self._last = equity
        self._peak = equity if self._peak is None else max(self._peak, equity)

    def reset_peak(self) -> None:
        self._peak = self._last

    def start_of_day(self, at: datetime) -> float | None:
        """The equity the day started from: the last mark before today (UTC), or today's first
        mark when there was none before."""
        if self._day is None:
            return None
        if _utc_day(at) != self._day:
            return self._last
        return self._prev_close if self._prev_close is not None else self._day_open

    @property
    def peak(self) -> float | None:
        return self._peak

    @staticmethod
    def record(run_id: str | None, at: datetime, equity: float) -> tuple[str, str, dict[str, Any]]:
        ts = format_utc(at)
        return MARK, f"{run_id or 'live'}:{ts}", {"run_id": run_id, "ts": ts,
                                                  "equity": round(equity, 2)}

    @classmethod
    def from_store(cls, store: AuditStore, run_id: str | None) -> EquityMarks:
        marks = cls()
        resumed = _last_resume_seq(store, run_id)
        for r in store.iter_records(MARK):
            b = r.body
            if b.get("run_id") != run_id:
                continue
            try:
                marks.mark(parse_utc(b.get("ts")), float(b["equity"]))
            except (KeyError, TypeError, ValueError):
                continue
            if r.seq < resumed:
                marks._peak = marks._last
        return marks


@dataclass
class Activity:
    """What a run carries from cycle to cycle for the order facts."""

    log: ExecutionLog
    marks: EquityMarks
    #: The latest reference price of each symbol seen.
    prices: dict[str, float]

    @classmethod
    def from_store(cls, store: AuditStore, run_id: str | None, now: datetime) -> Activity:
        return cls(ExecutionLog.from_store(store, run_id, now),
                   EquityMarks.from_store(store, run_id), {})

    @classmethod
    def fresh(cls) -> Activity:
        return cls(ExecutionLog(), EquityMarks(), {})


def _utc_day(at: datetime) -> date:
    return at.astimezone(UTC).date()


def _last_resume_seq(store: AuditStore, run_id: str | None) -> int:
    """The seq of the latest record that lifted a latch of `run_id` (0: never)."""
    for r in store.records("trading_state", limit=2000):
        if r.body.get("run_id") == run_id and r.body.get("resumed"):
            return r.seq
    return 0
