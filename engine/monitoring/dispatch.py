"""Hands alerts to sinks without ever holding up the caller.

Each sink has its own bounded queue and worker thread, so a slow or hung sink delays neither the
caller nor the other sinks. Every alert a sink does not get (queue full, send failed, send hung,
shutdown) is reported as a `SinkFailure` through `on_failure`, which runs on one reporter thread
of its own so that a slow callback cannot hold up `submit` either. A failure's error text never
carries a credential a sink was configured with: it is redacted before anything sees it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from engine.monitoring.alert import Alert, utc_timestamp
from engine.monitoring.redact import Redactor
from engine.monitoring.sinks import SeverityFilter, Sink, sink_secrets

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: How often a worker waiting on a send looks at the stop flag.
_POLL_S = 0.05
#: How long an idle worker or reporter sleeps between looks at the stop flag.
_IDLE_POLL_S = 1.0
#: Extra time `close` allows, past its timeout, for workers to stop and last reports to go out.
_SHUTDOWN_GRACE_S = 0.5
_MAX_ERROR_CHARS = 500

NOT_DELIVERED = "not delivered before shutdown"


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


class _Job:
    __slots__ = ("alert", "settled", "submitted")

    def __init__(self, alert: Alert, submitted: float) -> None:
        self.alert = alert
        self.submitted = submitted
        self.settled = False


class _SinkState:
    def __init__(self, sink: Sink, queue_size: int) -> None:
        self.sink = sink
        self.name = sink.name
        self.queue: queue.Queue[_Job | None] = queue.Queue(maxsize=queue_size)
        self.current: _Job | None = None
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.filtered = 0
        self.worker: threading.Thread | None = None

    def accepts(self, alert: Alert) -> bool:
        return self.sink.accepts(alert) if isinstance(self.sink, SeverityFilter) else True


@dataclass(frozen=True)
class _Outcome:
    ok: bool
    error: str
    started: float
    duration: float
    timed_out: bool = False
    stopped: bool = False
    done: threading.Event | None = None


class AlertDispatcher:
    """Fans alerts out to sinks, one bounded queue and worker thread per sink.

    A send that raises is retried up to `max_tries` in all, `retry_backoff_s` times the try
    number apart. A send that has not returned after `send_timeout_s` is reported as failed and
    not retried; it cannot be cancelled, so that sink's next alert waits until it returns.
    """

    def __init__(
        self,
        sinks: Sequence[Sink],
        *,
        on_failure: Callable[[SinkFailure], None],
        queue_size: int = 1000,
        send_timeout_s: float = 10.0,
        max_tries: int = 2,
        retry_backoff_s: float = 0.2,
        max_samples: int = 1000,
    ) -> None:
        _check_int("queue_size", queue_size, 1)
        _check_int("max_tries", max_tries, 1)
        _check_int("max_samples", max_samples, 1)
        _check_seconds("send_timeout_s", send_timeout_s, allow_zero=False)
        _check_seconds("retry_backoff_s", retry_backoff_s, allow_zero=True)
        if not callable(on_failure):
            raise ValueError("on_failure must be callable")
        self._states = _sink_states(sinks, queue_size)
        #: Masks every sink's credentials; whoever records failures may use it too.
        self.redactor = Redactor.of(s for state in self._states for s in sink_secrets(state.sink))
        self._on_failure = on_failure
        self._send_timeout_s = float(send_timeout_s)
        self._max_tries = max_tries
        self._retry_backoff_s = float(retry_backoff_s)

        # Never held while calling a sink, `on_failure` or a logging handler.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._pending = 0
        self._closed = False
        self._stop = threading.Event()
        self._samples: deque[DeliverySample] = deque(maxlen=max_samples)
        self._reports: queue.Queue[SinkFailure | None] = queue.Queue(
            maxsize=queue_size * len(self._states) + 100
        )
        self._reports_open = True
        self._reports_lost = 0
        self._on_failure_errors = 0

        self._reporter = threading.Thread(
            target=self._report_loop, name="alert-failure-reporter", daemon=True
        )
        self._reporter.start()
        for state in self._states:
            state.worker = threading.Thread(
                target=self._work, args=(state,), name=f"alert-sink-{state.name}", daemon=True
            )
            state.worker.start()

    @property
    def sink_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self._states)

    def submit(self, alert: Alert) -> int:
        """Queue `alert` for every sink that accepts it; the number of sinks it was queued for.

        Never blocks on a sink and never raises.
        """
        try:
            return self._submit(alert)
        except Exception as exc:
            _log.error("alert dispatcher: submit failed unexpectedly: %r", exc)
            return 0

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued alert is settled and reported; False if `timeout_s` ran out."""
        deadline = time.monotonic() + _timeout_or_zero(timeout_s)
        with self._changed:
            while self._pending > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    def close(self, timeout_s: float = 10.0) -> bool:
        """Flush for up to `timeout_s`, then stop; True when the flush finished in time.

        Alerts still queued or being sent then are reported as not delivered before shutdown.
        Returns within `timeout_s` plus half a second, whatever the sinks or `on_failure` do.
        """
        timeout = _timeout_or_zero(timeout_s)
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._closed:
                return self._pending == 0
            self._closed = True
        flushed = self.flush(timeout)
        self._stop.set()
        for state in self._states:
            _put_quietly(state.queue, None)
        end = max(deadline, time.monotonic()) + _SHUTDOWN_GRACE_S
        for state in self._states:
            if state.worker is not None:
                state.worker.join(max(0.0, end - time.monotonic()))
        for state in self._states:
            self._abandon(state)
        with self._lock:
            self._reports_open = False
        _put_quietly(self._reports, None)
        self._reporter.join(max(0.0, end - time.monotonic()))
        return flushed

    def stats(self) -> DispatchStats:
        with self._lock:
            return DispatchStats(
                sinks=tuple(
                    SinkStats(
                        name=s.name,
                        sent=s.sent,
                        failed=s.failed,
                        dropped=s.dropped,
                        filtered=s.filtered,
                        queued=s.queue.qsize(),
                    )
                    for s in self._states
                ),
                samples=tuple(self._samples),
                reports_lost=self._reports_lost,
                on_failure_errors=self._on_failure_errors,
            )

    def __enter__(self) -> AlertDispatcher:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- submitting -------------------------------------------------------------------------

    def _submit(self, alert: Alert) -> int:
        now = time.monotonic()
        if not isinstance(alert, Alert):
            alert_id = str(getattr(alert, "alert_id", "?"))
            for state in self._states:
                self._drop(state, alert_id, f"not an Alert: {type(alert).__name__}")
            return 0
        queued = 0
        for state in self._states:
            if not state.accepts(alert):
                with self._lock:
                    state.filtered += 1
                continue
            error = self._enqueue(state, _Job(alert, now))
            if error:
                self._drop(state, alert.alert_id, error)
            else:
                queued += 1
        return queued

    def _enqueue(self, state: _SinkState, job: _Job) -> str:
        with self._lock:
            if self._closed:
                return "dispatcher is closed; alert dropped"
            try:
                state.queue.put_nowait(job)
            except queue.Full:
                return f"queue full ({state.queue.maxsize} alerts waiting); alert dropped"
            self._pending += 1
            return ""

    def _drop(self, state: _SinkState, alert_id: str, error: str) -> None:
        with self._lock:
            state.dropped += 1
        self._report(state.name, alert_id, error)

    # -- delivering -------------------------------------------------------------------------

    def _work(self, state: _SinkState) -> None:
        while not self._stop.is_set():
            try:
                job = state.queue.get(timeout=_IDLE_POLL_S)
            except queue.Empty:
                continue
            if job is None:
                continue
            if self._stop.is_set():
                self._settle(state, job, error=NOT_DELIVERED)
                return
            with self._lock:
                state.current = job
            try:
                self._deliver(state, job)
            except Exception as exc:
                self._settle(state, job, error=f"dispatcher error: {exc!r}")
            finally:
                with self._lock:
                    state.current = None

    def _deliver(self, state: _SinkState, job: _Job) -> None:
        handoff: float | None = None
        send_total = 0.0
        error = ""
        for attempt in range(1, self._max_tries + 1):
            outcome = self._send_once(state, job)
            if handoff is None:
                handoff = outcome.started - job.submitted
            send_total += outcome.duration
            timing = (handoff, send_total)
            if outcome.ok:
                self._settle(state, job, timing=timing)
                return
            if outcome.stopped:
                self._settle(state, job, error=f"{NOT_DELIVERED} (send still running)")
                return
            if outcome.timed_out:
                self._settle(
                    state,
                    job,
                    error=f"send did not return within {self._send_timeout_s:g} s",
                    timing=timing,
                )
                self._wait_until_returned(outcome.done)
                return
            error = outcome.error
            if attempt < self._max_tries and self._stop.wait(self._retry_backoff_s * attempt):
                self._settle(state, job, error=f"{NOT_DELIVERED} (last try: {error})")
                return
        tries = "1 try" if self._max_tries == 1 else f"{self._max_tries} tries"
        self._settle(
            state,
            job,
            error=f"send failed after {tries}: {error}",
            timing=(handoff or 0.0, send_total),
        )

    def _send_once(self, state: _SinkState, job: _Job) -> _Outcome:
        # A thread per send, so that a send which never returns can be given up on.
        done = threading.Event()
        box: dict[str, object] = {}

        def run() -> None:
            box["started"] = time.monotonic()
            try:
                state.sink.send(job.alert)
            except Exception as exc:
                box["error"] = f"{type(exc).__name__}: {exc}"
            else:
                box["ok"] = True
            finally:
                box["ended"] = time.monotonic()
                done.set()

        launched = time.monotonic()
        deadline = launched + self._send_timeout_s
        threading.Thread(target=run, name=f"alert-send-{state.name}", daemon=True).start()
        while not done.wait(max(0.0, min(_POLL_S, deadline - time.monotonic()))):
            now = time.monotonic()
            started = _float(box.get("started"), launched)
            if self._stop.is_set():
                return _Outcome(False, "", started, now - started, stopped=True, done=done)
            if now >= deadline:
                return _Outcome(False, "", started, now - started, timed_out=True, done=done)
        started = _float(box.get("started"), launched)
        duration = _float(box.get("ended"), started) - started
        if box.get("ok"):
            return _Outcome(True, "", started, duration)
        error = str(box.get("error", "send ended without returning"))
        return _Outcome(False, error, started, duration)

    def _wait_until_returned(self, done: threading.Event | None) -> None:
        while done is not None and not done.wait(_POLL_S):
            if self._stop.is_set():
                return

    def _settle(
        self,
        state: _SinkState,
        job: _Job,
        *,
        error: str = "",
        timing: tuple[float, float] | None = None,
    ) -> None:
        with self._changed:
            if job.settled:
                return
            job.settled = True
            if error:
                state.failed += 1
            else:
                state.sent += 1
            if timing is not None:
                self._samples.append(
                    DeliverySample(
                        sink=state.name,
                        alert_id=job.alert.alert_id,
                        handoff_s=timing[0],
                        send_s=timing[1],
                        ok=not error,
                    )
                )
            if error:
                # The report is counted before the job is released, so `flush` waits for it too.
                self._pending += 1
            self._pending -= 1
            self._changed.notify_all()
        if error:
            self._report(state.name, job.alert.alert_id, error, counted=True)

    def _abandon(self, state: _SinkState) -> None:
        while True:
            try:
                job = state.queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                self._settle(state, job, error=NOT_DELIVERED)
        with self._lock:
            current = state.current
        if current is not None:
            self._settle(state, current, error=f"{NOT_DELIVERED} (send still running)")

    # -- reporting --------------------------------------------------------------------------

    def _report(self, sink: str, alert_id: str, error: str, *, counted: bool = False) -> None:
        """Queue a failure for `on_failure`; `counted` when `_pending` already includes it.

        Called without the lock held, so that logging a lost report never holds up `submit`.
        """
        # Redacted before it is cut short, so that no piece of a secret survives the cut.
        failure = SinkFailure(
            sink=sink,
            alert_id=alert_id,
            error=self.redactor(error)[:_MAX_ERROR_CHARS],
            ts=utc_timestamp(),
        )
        with self._changed:
            if self._reports_open:
                try:
                    self._reports.put_nowait(failure)
                except queue.Full:
                    pass
                else:
                    if not counted:
                        self._pending += 1
                    return
            self._reports_lost += 1
            if counted:
                self._pending -= 1
                self._changed.notify_all()
        _log.warning(
            "alert dispatcher: failure report lost: sink=%s alert_id=%s error=%s",
            sink,
            alert_id,
            failure.error,
        )

    def _report_loop(self) -> None:
        while True:
            try:
                failure = self._reports.get(timeout=_IDLE_POLL_S)
            except queue.Empty:
                if self._stop.is_set() and not self._reports_open:
                    return
                continue
            if failure is None:
                if not self._reports_open and self._reports.empty():
                    return
                continue
            try:
                self._on_failure(failure)
            except Exception as exc:
                with self._lock:
                    self._on_failure_errors += 1
                _log.error("alert dispatcher: on_failure raised %r for %r", exc, failure)
            finally:
                with self._changed:
                    self._pending -= 1
                    self._changed.notify_all()


def _sink_states(sinks: Sequence[Sink], queue_size: int) -> list[_SinkState]:
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
        states.append(_SinkState(sink, queue_size))
    return states


def _put_quietly(q: queue.Queue[_T | None], item: None) -> None:
    # When full, the consumer is busy and sees the stop flag without a wake-up.
    with contextlib.suppress(queue.Full):
        q.put_nowait(item)


def _float(value: object, default: float) -> float:
    return value if isinstance(value, float) else default


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_seconds(name: str, value: object, *, allow_zero: bool) -> None:
    ok = (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and (value >= 0 if allow_zero else value > 0)
    )
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number of seconds {bound}, got {value!r}")


def _timeout_or_zero(timeout_s: object) -> float:
    # A bad timeout must not turn a bounded wait into an unbounded one.
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float):
        return 0.0
    if math.isnan(timeout_s) or timeout_s < 0:
        return 0.0
    return min(float(timeout_s), 86_400.0)
