"""What the alert dispatcher tells its caller: failures to deliver, timings and counts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SinkFailure:
    """An alert that one sink did not deliver, and why."""

    sink: str
    alert_id: str
    error: str
    ts: str


@dataclass(frozen=True)
class DeliverySample:
    """Timing of one alert at one sink."""

    sink: str
    alert_id: str
    #: Seconds from `submit` until the sink's `send` started (first try).
    handoff_s: float
    #: Seconds spent inside `send`, over every try.
    send_s: float
    ok: bool


@dataclass(frozen=True)
class SinkStats:
    name: str
    sent: int
    failed: int
    dropped: int
    filtered: int
    queued: int


@dataclass(frozen=True)
class DispatchStats:
    sinks: tuple[SinkStats, ...]
    #: The most recent delivery timings, oldest first, at most `max_samples`.
    samples: tuple[DeliverySample, ...]
    #: Failure reports that could not be queued for `on_failure` (its queue was full or closed).
    reports_lost: int
    #: Times `on_failure` itself raised.
    on_failure_errors: int

    @property
    def sent(self) -> int:
        return sum(s.sent for s in self.sinks)

    @property
    def failed(self) -> int:
        return sum(s.failed for s in self.sinks)

    @property
    def dropped(self) -> int:
        return sum(s.dropped for s in self.sinks)
