"""Group commit: one writer thread runs every request that records something, and commits the
requests that arrived together in one durable transaction, one fsync for all of them.

A request hands its work to `run` and waits. The writer takes the work waiting (up to
`max_batch` pieces), runs each in turn under the service's lock inside one held transaction
of the audit store, commits, and only then lets each request answer: a response never
reports a record that a crash could still take away. An order or a cancellation at the
broker inside the batch first commits what was recorded so far (see
`AuditStore.durable_before_effect`). While one batch is being committed the next gathers,
so the more callers at once, the fewer fsyncs per request.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from engine.audit.store import AuditStore

T = TypeVar("T")
MAX_BATCH = 256


class WriterStopped(Exception):
    """The service is stopping; the work was not run."""


@dataclass
class _Work:
    fn: Callable[[], Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


_STOP = _Work(lambda: None)


class GroupCommit:
    def __init__(self, store: AuditStore, lock: AbstractContextManager[Any], *,
                 max_batch: int = MAX_BATCH) -> None:
        self._store = store
        self._lock = lock
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Work] = queue.SimpleQueue()
        self._stopped = False
        self._gate = threading.Lock()  # nothing is queued behind the stop
        self._thread = threading.Thread(target=self._serve, name="fugger-writer", daemon=True)
        self._thread.start()

    def run(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the writer inside a transaction shared with the work that arrived with
        it; return (or raise) what it did once that transaction is committed. What `fn`
        recorded before raising is committed too: it describes steps that happened. `fn` must
        not call `run` (it runs on the writer already)."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("group commit: run() called from the writer itself")
        work = self._hand_in(_Work(fn))
        work.done.wait()
        return _outcome(work)  # type: ignore[no-any-return]

    def _hand_in(self, work: _Work) -> _Work:
        with self._gate:
            if self._stopped:
                raise WriterStopped("the service is stopping")
            self._queue.put(work)
        return work

    def on_writer(self) -> bool:
        return threading.current_thread() is self._thread

    def waiting(self) -> int:
        """Work queued and not yet taken by the writer."""
        return self._queue.qsize()

    def close(self) -> None:
        """Finish and commit the work already handed in, then stop the writer."""
        with self._gate:
            if self._stopped:
                return
            self._stopped = True
            self._queue.put(_STOP)
        self._thread.join()

    def _serve(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self._max_batch and batch[-1] is not _STOP:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = batch[-1] is _STOP
            work = [w for w in batch if w is not _STOP]
            if work:
                self._commit(work)
            if stop:
                return

    def _commit(self, batch: list[_Work]) -> None:
        try:
            with self._lock, self._store.transaction(durable=True):
                for w in batch:
                    try:
                        w.result = w.fn()
                    except BaseException as e:  # handed to its own request
                        w.error = e
        except BaseException as e:
            # The commit failed: nothing of this batch may be reported as done, nor refused
            # as recorded; it is not on disk.
            for w in batch:
                w.result, w.error = None, e
        finally:
            for w in batch:
                w.done.set()


def _outcome(work: _Work) -> Any:
    if work.error is not None:
        raise work.error
    return work.result
