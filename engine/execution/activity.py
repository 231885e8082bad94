"""What the order and book facts read besides the order: the recent execution log (orders sent,
fills) and the equity marks (start of day, peak). Both are kept in memory for a run and
rebuilt from the audit store for the live system, so a replay and a live step agree.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

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


@dataclass(frozen=True)
class Sent:
    at: datetime
    symbol: str
    side: str
    shares: int


class ExecutionLog:
    """Orders sent and fills, inside the look-back window."""

    def __init__(self) -> None:
        self._sent: deque[Sent] = deque()
        self._fills: deque[tuple[datetime, str]] = deque()

    def note_sent(self, at: datetime, symbol: str, side: str, shares: int) -> None:
        self._sent.append(Sent(at, symbol, side, shares))
        self._prune(at)

    def note_fill(self, at: datetime, symbol: str) -> None:
        self._fills.append((at, symbol))
        self._prune(at)

    def _prune(self, now: datetime) -> None:
        while self._sent and now - self._sent[0].at > LOOK_BACK:
            self._sent.popleft()
        while self._fills and now - self._fills[0][0] > LOOK_BACK:
            self._fills.popleft()

    def sent_within(self, now: datetime, window: timedelta) -> int:
        """Orders sent in the `window` up to `now` (an order at exactly now - window is out)."""
        return sum(1 for s in self._sent if timedelta(0) <= now - s.at < window)

    def fills_within(self, symbol: str, now: datetime, window: timedelta) -> int:
        return sum(1 for at, sym in self._fills
                   if sym == symbol and timedelta(0) <= now - at < window)

    def seconds_since_same(self, symbol: str, side: str, shares: int,
                           now: datetime) -> float | None:
        """Seconds since the latest order sent with this symbol, side and shares; None when
        there is none in the look-back."""
        for s in reversed(self._sent):
            if (s.symbol, s.side, s.shares) == (symbol, side, shares) and s.at <= now:
                age = (now - s.at).total_seconds()
                return age if age <= LOOK_BACK.total_seconds() else None
        return None

    @classmethod
    def from_store(cls, store: AuditStore, run_id: str | None, now: datetime) -> ExecutionLog:
        """The log of `run_id` (None: the live system) as the store holds it."""
        sent: list[Sent] = []
        fills: list[tuple[datetime, str]] = []
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
            elif b.get("status") == "filled":
                fills.append((at, str(b.get("symbol"))))
        log = cls()
        log._sent.extend(sorted(sent, key=lambda s: s.at))
        log._fills.extend(sorted(fills))
        return log


class EquityMarks:
    """The equity of the book at each cycle: where the day started and the peak since trading
    was last resumed (a person who resumes after a drawdown accepts today's level)."""

    def __init__(self) -> None:
        self._day: str | None = None
        self._day_open: float | None = None
        self._prev_close: float | None = None
        self._last: float | None = None
        self._peak: float | None = None

    def mark(self, at: datetime, equity: float) -> None:
        day = format_utc(at)[:10]
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
        if format_utc(at)[:10] != self._day:
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


def _last_resume_seq(store: AuditStore, run_id: str | None) -> int:
    """The seq of the latest record that lifted a latch of `run_id` (0: never)."""
    for r in store.records("trading_state", limit=2000):
        if r.body.get("run_id") == run_id and r.body.get("resumed"):
            return r.seq
    return 0
