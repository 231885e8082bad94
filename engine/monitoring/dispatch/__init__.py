"""Hands alerts to sinks without ever holding up the caller.

Each sink has its own bounded queue and worker thread, so a slow or hung sink delays neither the
caller nor the other sinks. Every alert a sink does not get (queue full, send failed, send hung,
shutdown) is reported as a `SinkFailure` through `on_failure`, which runs on one reporter thread
of its own so that a slow callback cannot hold up `submit` either. A failure's error text never
carries a credential a sink was configured with: it is redacted before anything sees it.

The dispatcher here does the queueing, retrying, settling and reporting; `records` holds what it
tells its caller, `sink_queue` each sink's queue and counters, `timed_send` one try of one send
on a thread of its own, and `arguments` the checks of its numeric arguments.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from engine.monitoring.alert import Alert, utc_timestamp
from engine.monitoring.dispatch.arguments import check_int, check_seconds, timeout_or_zero
from engine.monitoring.dispatch.records import DeliverySample, DispatchStats, SinkFailure, SinkStats
from engine.monitoring.dispatch.sink_queue import Job, SinkState, put_quietly, sink_states
from engine.monitoring.dispatch.timed_send import send_once, wait_until_returned
from engine.monitoring.redact import Redactor
from engine.monitoring.sinks import Sink, sink_secrets

_log = logging.getLogger(__name__)

#: How long an idle worker or reporter sleeps between looks at the stop flag.
_IDLE_POLL_S = 1.0
#: Extra time `close` allows, past its timeout, for workers to stop and last reports to go out.
_SHUTDOWN_GRACE_S = 0.5
_MAX_ERROR_CHARS = 500

NOT_DELIVERED = "not delivered before shutdown"


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
        check_int("queue_size", queue_size, 1)
        check_int("max_tries", max_tries, 1)
        check_int("max_samples", max_samples, 1)
        check_seconds("send_timeout_s", send_timeout_s, allow_zero=False)
        check_seconds("retry_backoff_s", retry_backoff_s, allow_zero=True)
        if not callable(on_failure):
            raise ValueError("on_failure must be callable")
        self._states = sink_states(sinks, queue_size)
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
        deadline = time.monotonic() + timeout_or_zero(timeout_s)
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
        timeout = timeout_or_zero(timeout_s)
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._closed:
                return self._pending == 0
            self._closed = True
        flushed = self.flush(timeout)
        self._stop.set()
        for state in self._states:
            put_quietly(state.queue, None)
        end = max(deadline, time.monotonic()) + _SHUTDOWN_GRACE_S
        for state in self._states:
            if state.worker is not None:
                state.worker.join(max(0.0, end - time.monotonic()))
        for state in self._states:
            self._abandon(state)
        with self._lock:
            self._reports_open = False
        put_quietly(self._reports, None)
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
            error = self._enqueue(state, Job(alert, now))
            if error:
                self._drop(state, alert.alert_id, error)
            else:
                queued += 1
        return queued

    def _enqueue(self, state: SinkState, job: Job) -> str:
        with self._lock:
            if self._closed:
                return "dispatcher is closed; alert dropped"
            try:
                state.queue.put_nowait(job)
            except queue.Full:
                return f"queue full ({state.queue.maxsize} alerts waiting); alert dropped"
            self._pending += 1
            return ""

    def _drop(self, state: SinkState, alert_id: str, error: str) -> None:
        with self._lock:
            state.dropped += 1
        self._report(state.name, alert_id, error)

    # -- delivering -------------------------------------------------------------------------

    def _work(self, state: SinkState) -> None:
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

    def _deliver(self, state: SinkState, job: Job) -> None:
        handoff: float | None = None
        send_total = 0.0
        error = ""
        for attempt in range(1, self._max_tries + 1):
            outcome = send_once(
                state.sink,
                job.alert,
                thread_name=f"alert-send-{state.name}",
                timeout_s=self._send_timeout_s,
                stop=self._stop,
            )
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
                wait_until_returned(outcome.done, self._stop)
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

    def _settle(
        self,
        state: SinkState,
        job: Job,
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

    def _abandon(self, state: SinkState) -> None:
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
