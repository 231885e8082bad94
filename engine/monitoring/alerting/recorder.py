"""Where every alert goes: appended to the audit store, then handed to the dispatcher; and
where a sink's failure to deliver one is recorded."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine.audit.store import AuditError, AuditStore
from engine.ids import new_id
from engine.monitoring.alert import Alert, Severity
from engine.monitoring.dispatch import AlertDispatcher
from engine.monitoring.dispatch.records import SinkFailure
from engine.monitoring.metrics import Metrics
from engine.monitoring.redact import Redactor
from engine.timeutil import format_utc

_log = logging.getLogger(__name__)

ALERT_KIND = "alert"
SINK_FAILURE_KIND = "alert_sink_failure"
MAX_ERROR_CHARS = 1000


class AlertRecorder:
    """Stores and hands on the alerts of one run, and records the sinks' delivery failures."""

    def __init__(
        self, store: AuditStore, dispatcher: AlertDispatcher | None, run_id: str, metrics: Metrics
    ) -> None:
        self.run_id = run_id
        self.metrics = metrics
        self._store = store
        self._lock = threading.Lock()
        self._dispatcher = dispatcher
        self._owns_dispatcher = False
        # Sink failures are reported on the dispatcher's own thread; they are written through a
        # connection of their own so they never interleave with a transaction of the run loop.
        self._failure_lock = threading.Lock()
        self._failure_store: AuditStore | None = None
        self._redact = Redactor()
        self._closed = False

    def attach_dispatcher(self, dispatcher: AlertDispatcher, *, owned: bool = False) -> None:
        """Send alerts from now on through `dispatcher`; `close` closes it when `owned`."""
        with self._lock:
            self._dispatcher = dispatcher
            self._redact = self._redact + dispatcher.redactor
            if owned:
                self._owns_dispatcher = True

    def emit(
        self,
        moment: datetime,
        severity: Severity,
        kind: str,
        key: str,
        title: str,
        message: str,
        context: Mapping[str, object],
    ) -> Alert:
        ts = format_utc(moment)
        alert = Alert(
            alert_id=new_id(),
            ts=ts,
            severity=severity,
            kind=kind,
            key=key,
            title=title,
            message=message,
            context={"run_id": self.run_id, **context},
        )
        body: dict[str, Any] = {**alert.to_json(), "run_id": self.run_id}
        try:
            self._store.append(ALERT_KIND, alert.alert_id, body)
        except AuditError:
            # The people watching must still hear of it; the caller learns the store failed.
            self._submit(alert)
            raise
        self._submit(alert)
        self.metrics.inc(f"alerts.{severity.value}", ts=ts)
        return alert

    def on_sink_failure(self, failure: SinkFailure) -> None:
        """Record that a sink did not deliver an alert. Never raises and never alerts: an alert
        about a failing sink could only fail the same way. The error is redacted again with the
        credentials of every sink this recorder knows: the store keeps it for ever."""
        try:
            error = self._redact(str(getattr(failure, "error", failure)))
            body = {
                "run_id": self.run_id,
                "sink": str(getattr(failure, "sink", "?")),
                "alert_id": str(getattr(failure, "alert_id", "?")),
                "error": error[:MAX_ERROR_CHARS],
                "ts": str(getattr(failure, "ts", "")),
            }
            with self._failure_lock:
                if self._closed:
                    _log.warning("alert sink failure after close, not recorded: %s", body)
                    return
                if self._failure_store is None:
                    self._failure_store = AuditStore(self._store.path)
                self._failure_store.append(SINK_FAILURE_KIND, body["alert_id"], body)
            self.metrics.inc("alerts.sink_failures")
        except Exception as exc:
            _log.error("could not record an alert sink failure: %s",
                       self._redact(f"{type(exc).__name__}: {exc}"))

    def close(self, timeout_s: float = 10.0) -> None:
        """Close the dispatcher if it is owned, then stop recording sink failures."""
        with self._lock:
            dispatcher = self._dispatcher if self._owns_dispatcher else None
        if dispatcher is not None:
            dispatcher.close(timeout_s)
        with self._failure_lock:
            self._closed = True
            if self._failure_store is not None:
                self._failure_store.close()
                self._failure_store = None

    def _submit(self, alert: Alert) -> None:
        with self._lock:
            dispatcher = self._dispatcher
        if dispatcher is not None:
            dispatcher.submit(alert)
