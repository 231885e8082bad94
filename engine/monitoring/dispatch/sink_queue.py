"""Each sink's own bounded queue of alerts, with its counters and the alert it is sending."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Sequence
from typing import TypeVar

from engine.monitoring.alert import Alert
from engine.monitoring.sinks import SeverityFilter, Sink

_T = TypeVar("_T")


class Job:
    """One alert on its way to one sink; settled once, whether delivered or not."""

    __slots__ = ("alert", "settled", "submitted")

    def __init__(self, alert: Alert, submitted: float) -> None:
        self.alert = alert
        self.submitted = submitted
        self.settled = False


class SinkState:
    def __init__(self, sink: Sink, queue_size: int) -> None:
        self.sink = sink
        self.name = sink.name
        self.queue: queue.Queue[Job | None] = queue.Queue(maxsize=queue_size)
        self.current: Job | None = None
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.filtered = 0
        self.worker: threading.Thread | None = None

    def accepts(self, alert: Alert) -> bool:
        return self.sink.accepts(alert) if isinstance(self.sink, SeverityFilter) else True


def sink_states(sinks: Sequence[Sink], queue_size: int) -> list[SinkState]:
    if isinstance(sinks, str) or not isinstance(sinks, Sequence) or not sinks:
        raise ValueError("an alert dispatcher needs a non-empty list of sinks")
    seen: set[str] = set()
    states = []
    for sink in sinks:
        name = getattr(sink, "name", None)
        if not isinstance(name, str) or not name or not callable(getattr(sink, "send", None)):
            raise ValueError(f"{sink!r} is not a sink (needs a non-empty `name` and `send`)")
        if name in seen:
            raise ValueError(f"two sinks are named {name!r}; sink names must be unique")
        seen.add(name)
        states.append(SinkState(sink, queue_size))
    return states


def put_quietly(q: queue.Queue[_T | None], item: None) -> None:
    # When full, the consumer is busy and sees the stop flag without a wake-up.
    with contextlib.suppress(queue.Full):
        q.put_nowait(item)
