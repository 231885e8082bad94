"""One try of one send, on a thread of its own, so that a send which never returns can be
given up on: at its deadline, or as soon as the dispatcher stops."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from engine.monitoring.alert import Alert
from engine.monitoring.sinks import Sink

#: How often a worker waiting on a send looks at the stop flag.
POLL_S = 0.05


@dataclass(frozen=True)
class Outcome:
    ok: bool
    error: str
    started: float
    duration: float
    timed_out: bool = False
    stopped: bool = False
    done: threading.Event | None = None


def send_once(
    sink: Sink, alert: Alert, *, thread_name: str, timeout_s: float, stop: threading.Event
) -> Outcome:
    done = threading.Event()
    box: dict[str, object] = {}

    def run() -> None:
        box["started"] = time.monotonic()
        try:
            sink.send(alert)
        except Exception as exc:
            box["error"] = f"{type(exc).__name__}: {exc}"
        else:
            box["ok"] = True
        finally:
            box["ended"] = time.monotonic()
            done.set()

    launched = time.monotonic()
    deadline = launched + timeout_s
    threading.Thread(target=run, name=thread_name, daemon=True).start()
    while not done.wait(max(0.0, min(POLL_S, deadline - time.monotonic()))):
        now = time.monotonic()
        started = _float(box.get("started"), launched)
        if stop.is_set():
            return Outcome(False, "", started, now - started, stopped=True, done=done)
        if now >= deadline:
            return Outcome(False, "", started, now - started, timed_out=True, done=done)
    started = _float(box.get("started"), launched)
    duration = _float(box.get("ended"), started) - started
    if box.get("ok"):
        return Outcome(True, "", started, duration)
    error = str(box.get("error", "send ended without returning"))
    return Outcome(False, error, started, duration)


def wait_until_returned(done: threading.Event | None, stop: threading.Event) -> None:
    """Wait for a send given up on to return, so the sink is not sent to twice at once."""
    while done is not None and not done.wait(POLL_S):
        if stop.is_set():
            return


def _float(value: object, default: float) -> float:
    return value if isinstance(value, float) else default
