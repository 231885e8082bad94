"""The alert engine of one run: one `on_*` method per event of the run loop."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from engine.actions import Action
from engine.audit.store import AuditStore
from engine.monitoring.alert import Alert, Severity
from engine.monitoring.alerting.episodes import SafetyEpisodes
from engine.monitoring.alerting.halts import HaltWatch
from engine.monitoring.alerting.inputs import (
    event_time,
    name,
    rule_id,
    safety_action,
    trading_state,
)
from engine.monitoring.alerting.recorder import MAX_ERROR_CHARS, AlertRecorder
from engine.monitoring.dispatch import AlertDispatcher
from engine.monitoring.dispatch.records import SinkFailure
from engine.monitoring.metrics import Metrics
from engine.monitoring.sinks import Sink
from engine.policy.model import AlertSettings
from engine.timeutil import format_utc

#: How many problems an alert about a policy that failed to load carries in its context.
_MAX_PROBLEMS = 50
_MAX_MESSAGE_PROBLEMS = 10


class _BoundedSet:
    """Remembers the most recent `limit` keys; the oldest are forgotten first."""

    def __init__(self, limit: int) -> None:
        self._keys: OrderedDict[Hashable, None] = OrderedDict()
        self._limit = limit

    def __contains__(self, key: Hashable) -> bool:
        return key in self._keys

    def add(self, key: Hashable) -> None:
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self._limit:
            self._keys.popitem(last=False)


class AlertEngine:
    """De-duplicated alerts for one run.

    Safety actions, per symbol, open and close episodes with hysteresis (`settings`, cycles;
    see `SafetyEpisodes`). The book's trading state alerts on entering and leaving HALTED and
    reminds once per `halt_reminder_every` while a latched halt outlives its rule (see
    `HaltWatch`). A failed policy load, an approval waiting too long and a broker error alert
    once each; every refused action and every checkpoint alerts.

    Every `on_*` method returns the alerts it raised (an empty tuple when it stayed silent).
    Calls are serialised, so alerts are stored in the order their events were handled.
    """

    def __init__(
        self,
        store: AuditStore,
        dispatcher: AlertDispatcher | None,
        run_id: str,
        *,
        approval_wait_limit: timedelta = timedelta(days=1),
        halt_reminder_every: timedelta = timedelta(days=7),
        metrics: Metrics | None = None,
        max_remembered: int = 100_000,
        settings: AlertSettings | None = None,
    ) -> None:
        if not isinstance(run_id, str) or not run_id.strip():
            raise ValueError(f"run_id must be a non-empty string, got {run_id!r}")
        for label, limit in (
            ("approval_wait_limit", approval_wait_limit),
            ("halt_reminder_every", halt_reminder_every),
        ):
            if not isinstance(limit, timedelta) or limit <= timedelta(0):
                raise ValueError(f"{label} must be a positive timedelta, got {limit!r}")
        if isinstance(max_remembered, bool) or not isinstance(max_remembered, int) or (
            max_remembered < 1
        ):
            raise ValueError(f"max_remembered must be an integer >= 1, got {max_remembered!r}")
        self.run_id = run_id
        self.settings = settings if settings is not None else AlertSettings()
        self.approval_wait_limit = approval_wait_limit
        self.halt_reminder_every = halt_reminder_every
        self.metrics = metrics if metrics is not None else Metrics()
        self._recorder = AlertRecorder(store, dispatcher, run_id, self.metrics)
        self._lock = threading.RLock()
        self._episodes = SafetyEpisodes(self._recorder, self.settings)
        self._halts = HaltWatch(self._recorder, halt_reminder_every)
        self._policy_failures = _BoundedSet(max_remembered)
        self._approvals_warned = _BoundedSet(max_remembered)
        self._broker_errors = _BoundedSet(max_remembered)

    @classmethod
    def with_sinks(
        cls, store: AuditStore, sinks: Sequence[Sink], run_id: str, **options: Any
    ) -> AlertEngine:
        """An engine with a dispatcher of its own over `sinks`, whose delivery failures it
        records; `close` closes that dispatcher."""
        engine = cls(store, None, run_id, **options)
        engine._recorder.attach_dispatcher(
            AlertDispatcher(sinks, on_failure=engine.on_sink_failure), owned=True
        )
        return engine

    def attach_dispatcher(self, dispatcher: AlertDispatcher) -> None:
        """Send alerts from now on through `dispatcher` (built with
        `on_failure=engine.on_sink_failure`)."""
        with self._lock:
            self._recorder.attach_dispatcher(dispatcher)

    # -- events -----------------------------------------------------------------------------

    def on_safety(
        self, ts: str | datetime, symbol: str, action: Action | str, rule: str | None
    ) -> tuple[Alert, ...]:
        """The safety action in force for `symbol` at `ts` (one call per cycle), and the rule
        that decided it."""
        moment = event_time(ts)
        symbol = name("symbol", symbol)
        act = safety_action(action)
        rule = rule_id(rule)
        with self._lock:
            return self._episodes.observe(moment, symbol, act, rule)

    def on_kill(
        self, ts: str | datetime, scope: str, by: str, reason: str, cancelled: int,
        *, filled: int = 0,
    ) -> Alert:
        """A person used the kill function: always critical, never de-duplicated. `cancelled`:
        open orders and pending approvals really withdrawn; `filled`: open orders the market
        filled before the cancellation arrived (they traded, and are not counted as withdrawn)."""
        moment = event_time(ts)
        late = (f"; {filled} open order(s) had filled before the cancellation arrived"
                if filled else "")
        with self._lock:
            return self._recorder.emit(
                moment,
                Severity.CRITICAL,
                "kill",
                f"kill:{format_utc(moment)}",
                f"kill: {scope}",
                f"{by} killed trading for {scope}: {reason}; {cancelled} open order(s) and "
                f"pending approval(s) cancelled{late}; a person must resume",
                {"scope": scope, "by": by, "reason": reason, "cancelled": cancelled,
                 "filled_before_cancel": filled},
            )

    def on_trading_state(
        self, ts: str | datetime, state: str, rule: str | None
    ) -> tuple[Alert, ...]:
        """The book's trading state at `ts`. `rule` is the rule demanding that state now, or
        None when none does (a halt that stays latched after its rule stopped firing)."""
        moment = event_time(ts)
        new = trading_state(state)
        rule = rule_id(rule)
        with self._lock:
            return self._halts.observe(moment, new, rule)

    def on_policy_load_failed(
        self, ts: str | datetime, problems: Iterable[object]
    ) -> tuple[Alert, ...]:
        """A policy set that could not be loaded; the same set of problems alerts once."""
        moment = event_time(ts)
        texts = sorted({str(p) for p in problems})
        digest = hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()
        with self._lock:
            if digest in self._policy_failures:
                return ()
            self._policy_failures.add(digest)
            shown = "; ".join(texts[:_MAX_MESSAGE_PROBLEMS])
            more = len(texts) - _MAX_MESSAGE_PROBLEMS
            return (
                self._recorder.emit(
                    moment,
                    Severity.CRITICAL,
                    "policy",
                    f"policy:load_failed:{digest[:16]}",
                    "Policy set failed to load",
                    f"{len(texts)} problem(s); the policy set was not applied"
                    + (f": {shown}" if shown else "")
                    + (f" (and {more} more)" if more > 0 else ""),
                    {
                        "content_hash": digest,
                        "problem_count": len(texts),
                        "problems": texts[:_MAX_PROBLEMS],
                    },
                ),
            )

    def on_approval_waiting(
        self, ts: str | datetime, item_id: str, age: timedelta
    ) -> tuple[Alert, ...]:
        """An order waiting for approval for `age`; warns once per item, when `age` reaches
        `approval_wait_limit`."""
        moment = event_time(ts)
        item_id = name("item_id", item_id)
        if not isinstance(age, timedelta):
            raise ValueError(f"age of approval item {item_id!r} must be a timedelta, got {age!r}")
        with self._lock:
            if age < self.approval_wait_limit or item_id in self._approvals_warned:
                return ()
            self._approvals_warned.add(item_id)
            return (
                self._recorder.emit(
                    moment,
                    Severity.WARNING,
                    "approval",
                    f"approval:waiting:{item_id}",
                    "Order waiting for approval",
                    f"approval item {item_id} has waited {_age_text(age)}; the limit is "
                    f"{_age_text(self.approval_wait_limit)}",
                    {
                        "item_id": item_id,
                        "age_s": age.total_seconds(),
                        "limit_s": self.approval_wait_limit.total_seconds(),
                    },
                ),
            )

    def on_broker_error(
        self, ts: str | datetime, client_id: str, error: object
    ) -> tuple[Alert, ...]:
        """The broker refused or failed an order; a retry failing the same way is not new."""
        moment = event_time(ts)
        client_id = name("client_id", client_id)
        text = str(error)[:MAX_ERROR_CHARS]
        with self._lock:
            if (client_id, text) in self._broker_errors:
                return ()
            self._broker_errors.add((client_id, text))
            return (
                self._recorder.emit(
                    moment,
                    Severity.CRITICAL,
                    "broker",
                    f"broker:{client_id}",
                    "Broker error",
                    f"order {client_id}: {text}",
                    {"client_id": client_id, "error": text},
                ),
            )

    def on_access_refused(self, ts: str | datetime, who: str, action: str, reason: str,
                          target: str | None = None) -> Alert:
        """Someone tried an action they may not take: every attempt is its own alert."""
        text = str(reason)[:MAX_ERROR_CHARS]
        with self._lock:
            return self._recorder.emit(
                event_time(ts), Severity.CRITICAL, "access",
                f"access:{who}:{action}:{target or '-'}", "Action refused",
                f"{who} may not {action}" + (f" {target}" if target else "") + f": {text}",
                {"who": who, "action": action, "target": target, "reason": text})

    def on_checkpoint(self, ts: str | datetime, checkpoint: Mapping[str, object],
                      path: str) -> Alert:
        """A signed checkpoint of the audit store, handed to the sinks as a witness (its
        digests stay in the witness file)."""
        head = {k: checkpoint[k] for k in ("store_id", "genesis", "seq", "head_hash", "time",
                                            "from_seq", "key_id", "signature")
                if k in checkpoint}
        with self._lock:
            return self._recorder.emit(
                event_time(ts), Severity.INFO, "checkpoint",
                f"checkpoint:{head.get('seq')}", "Audit checkpoint",
                f"audit store {head.get('store_id')} signed at seq "
                f"{head.get('seq')}, head {head.get('head_hash')}",
                {**head, "path": path})

    def on_sink_failure(self, failure: SinkFailure) -> None:
        """Record that a sink did not deliver an alert. Never raises and never alerts: an alert
        about a failing sink could only fail the same way."""
        self._recorder.on_sink_failure(failure)

    def close(self, timeout_s: float = 10.0) -> None:
        """Close the dispatcher if this engine made it, then stop recording sink failures."""
        self._recorder.close(timeout_s)

    def __enter__(self) -> AlertEngine:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _age_text(age: timedelta) -> str:
    hours = age.total_seconds() / 3600
    return f"{hours / 24:g} day(s)" if hours >= 24 else f"{hours:g} hour(s)"
