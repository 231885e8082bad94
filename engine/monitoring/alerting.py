"""Turns what happens in a run into alerts: one alert when an episode starts, one when it ends.

The run loop calls one `on_*` method per event. Each alert is appended to the audit store (kind
`alert`, with the run id) and handed to the dispatcher in the same call; the dispatcher never
blocks. An alert's `ts` is the time of the event (in a replay, the simulated day), not the wall
clock; its id sorts by the time it was made.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from engine.actions import Action
from engine.audit.store import AuditError, AuditStore
from engine.ids import new_id
from engine.monitoring.alert import Alert, Severity
from engine.monitoring.dispatch import AlertDispatcher
from engine.monitoring.dispatch.records import SinkFailure
from engine.monitoring.metrics import Metrics
from engine.monitoring.redact import Redactor
from engine.monitoring.sinks import Sink
from engine.policy.model import AlertSettings
from engine.timeutil import TimestampError, format_utc, parse_utc

_log = logging.getLogger(__name__)

ALERT_KIND = "alert"
SINK_FAILURE_KIND = "alert_sink_failure"

#: The safety actions that open an episode, and how loud its start is.
EPISODE_SEVERITY: Mapping[Action, Severity] = {
    Action.HALT: Severity.CRITICAL,
    Action.FLATTEN: Severity.WARNING,
    Action.BLOCK_NEW: Severity.WARNING,
}

_ACTION_VALUES: tuple[str, ...] = tuple(a.value for a in Action)
TRADING_STATES: tuple[str, ...] = ("ACTIVE", "REDUCING", "HALTED")
_HALTED = "HALTED"
#: How many problems an alert about a policy that failed to load carries in its context.
_MAX_PROBLEMS = 50
_MAX_MESSAGE_PROBLEMS = 10
_MAX_ERROR_CHARS = 1000


@dataclass(frozen=True)
class _Episode:
    action: Action
    since: datetime
    rule: str | None
    alert_id: str


@dataclass(frozen=True)
class _Track:
    """Where one symbol stands between cycles: its open episode (alerted), the action waiting
    to hold long enough to open one, and how long the open episode's action has been absent."""

    episode: _Episode | None = None
    candidate: Action | None = None
    candidate_since: datetime | None = None
    candidate_cycles: int = 0
    clear_since: datetime | None = None
    clear_cycles: int = 0


@dataclass(frozen=True)
class _Halt:
    since: datetime
    rule: str | None
    alert_id: str
    #: When the rule that halted stopped firing while the halt stayed latched.
    quiet_since: datetime | None = None
    last_reminder: datetime | None = None


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

    Safety actions (per symbol), with hysteresis (`settings`, cycles): an episode of `flatten`
    or `block_new` opens, with a warning, once the action has held for `min_duration` cycles;
    `halt` opens one at once, critical. An open episode closes, with one info alert, only
    after its action has been absent for `clear_after` cycles, so an action that flickers
    on and off is one episode, not one a day. Moving to another alerting action that holds
    long enough ends one episode and starts the next; staying is silent.

    The book's trading state: entering HALTED is critical; while a latched halt outlives the
    rule that caused it, one warning per `halt_reminder_every`; leaving HALTED is info.

    Every `on_*` method returns the alerts it raised (an empty tuple when it stayed silent).
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
        self._store = store
        self._dispatcher = dispatcher
        self._owns_dispatcher = False
        self._lock = threading.RLock()
        self._tracks: dict[str, _Track] = {}
        self._state: str | None = None
        self._halt: _Halt | None = None
        self._policy_failures = _BoundedSet(max_remembered)
        self._approvals_warned = _BoundedSet(max_remembered)
        self._broker_errors = _BoundedSet(max_remembered)
        # Sink failures are reported on the dispatcher's own thread; they are written through a
        # connection of their own so they never interleave with a transaction of the run loop.
        self._failure_lock = threading.Lock()
        self._failure_store: AuditStore | None = None
        self._redact = Redactor()
        self._closed = False

    @classmethod
    def with_sinks(
        cls, store: AuditStore, sinks: Sequence[Sink], run_id: str, **options: Any
    ) -> AlertEngine:
        """An engine with a dispatcher of its own over `sinks`, whose delivery failures it
        records; `close` closes that dispatcher."""
        engine = cls(store, None, run_id, **options)
        engine.attach_dispatcher(AlertDispatcher(sinks, on_failure=engine.on_sink_failure))
        engine._owns_dispatcher = True
        return engine

    def attach_dispatcher(self, dispatcher: AlertDispatcher) -> None:
        """Send alerts from now on through `dispatcher` (built with
        `on_failure=engine.on_sink_failure`)."""
        with self._lock:
            self._dispatcher = dispatcher
            self._redact = self._redact + dispatcher.redactor

    # -- events -----------------------------------------------------------------------------

    def on_safety(
        self, ts: str | datetime, symbol: str, action: Action | str, rule: str | None
    ) -> tuple[Alert, ...]:
        """The safety action in force for `symbol` at `ts` (one call per cycle), and the rule
        that decided it."""
        moment = _moment(ts)
        symbol = _name("symbol", symbol)
        act = _action(action)
        rule = _rule(rule)
        with self._lock:
            track = self._tracks.get(symbol, _Track())
            episode = track.episode
            if episode is not None and episode.action is act:
                self._tracks[symbol] = _Track(episode)
                return ()
            if act in EPISODE_SEVERITY:
                held = track.candidate_cycles + 1 if track.candidate is act else 1
                since = track.candidate_since if track.candidate is act else moment
                track = replace(track, candidate=act, candidate_since=since,
                                candidate_cycles=held)
            else:
                track = replace(track, candidate=None, candidate_since=None, candidate_cycles=0)
            if episode is not None:
                track = replace(track, clear_since=track.clear_since or moment,
                                clear_cycles=track.clear_cycles + 1)
            alerts: list[Alert] = []
            opens = track.candidate is not None and (
                track.candidate is Action.HALT
                or track.candidate_cycles >= self.settings.min_duration)
            if episode is not None and (opens or track.clear_cycles >= self.settings.clear_after):
                alerts.append(self._episode_ended(track.clear_since or moment, moment, symbol,
                                                  episode, act))
                track = _Track(None, track.candidate, track.candidate_since,
                               track.candidate_cycles)
            if opens and track.candidate is not None:
                started = self._episode_started(moment, track.candidate_since or moment, symbol,
                                                track.candidate, rule, episode)
                alerts.append(started)
                track = _Track(_Episode(act, track.candidate_since or moment, rule,
                                        started.alert_id))
            self._tracks[symbol] = track
            return tuple(alerts)

    def on_trading_state(
        self, ts: str | datetime, state: str, rule: str | None
    ) -> tuple[Alert, ...]:
        """The book's trading state at `ts`. `rule` is the rule demanding that state now, or
        None when none does (a halt that stays latched after its rule stopped firing)."""
        moment = _moment(ts)
        new = _trading_state(state)
        rule = _rule(rule)
        with self._lock:
            old, self._state = self._state, new
            if new == _HALTED:
                if old != _HALTED:
                    return (self._halted(moment, old, rule),)
                return self._latched(moment, rule)
            if old == _HALTED:
                return (self._resumed(moment, new, rule),)
            return ()

    def on_policy_load_failed(
        self, ts: str | datetime, problems: Iterable[object]
    ) -> tuple[Alert, ...]:
        """A policy set that could not be loaded; the same set of problems alerts once."""
        moment = _moment(ts)
        texts = sorted({str(p) for p in problems})
        digest = hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()
        with self._lock:
            if digest in self._policy_failures:
                return ()
            self._policy_failures.add(digest)
            shown = "; ".join(texts[:_MAX_MESSAGE_PROBLEMS])
            more = len(texts) - _MAX_MESSAGE_PROBLEMS
            return (
                self._emit(
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
        moment = _moment(ts)
        item_id = _name("item_id", item_id)
        if not isinstance(age, timedelta):
            raise ValueError(f"age of approval item {item_id!r} must be a timedelta, got {age!r}")
        with self._lock:
            if age < self.approval_wait_limit or item_id in self._approvals_warned:
                return ()
            self._approvals_warned.add(item_id)
            return (
                self._emit(
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
        moment = _moment(ts)
        client_id = _name("client_id", client_id)
        text = str(error)[:_MAX_ERROR_CHARS]
        with self._lock:
            if (client_id, text) in self._broker_errors:
                return ()
            self._broker_errors.add((client_id, text))
            return (
                self._emit(
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
        text = str(reason)[:_MAX_ERROR_CHARS]
        with self._lock:
            return self._emit(_moment(ts), Severity.CRITICAL, "access",
                              f"access:{who}:{action}:{target or '-'}", "Action refused",
                              f"{who} may not {action}" + (f" {target}" if target else "")
                              + f": {text}",
                              {"who": who, "action": action, "target": target, "reason": text})

    def on_checkpoint(self, ts: str | datetime, checkpoint: Mapping[str, object],
                      path: str) -> Alert:
        """A signed checkpoint of the audit store, handed to the sinks as a witness (its
        digests stay in the witness file)."""
        head = {k: checkpoint[k] for k in ("store_id", "genesis", "seq", "head_hash", "time",
                                            "from_seq", "key_id", "signature")
                if k in checkpoint}
        with self._lock:
            return self._emit(_moment(ts), Severity.INFO, "checkpoint",
                              f"checkpoint:{head.get('seq')}", "Audit checkpoint",
                              f"audit store {head.get('store_id')} signed at seq "
                              f"{head.get('seq')}, head {head.get('head_hash')}",
                              {**head, "path": path})

    def on_sink_failure(self, failure: SinkFailure) -> None:
        """Record that a sink did not deliver an alert. Never raises and never alerts: an alert
        about a failing sink could only fail the same way. The error is redacted again with the
        credentials of every sink this engine knows: the store keeps it for ever."""
        try:
            error = self._redact(str(getattr(failure, "error", failure)))
            body = {
                "run_id": self.run_id,
                "sink": str(getattr(failure, "sink", "?")),
                "alert_id": str(getattr(failure, "alert_id", "?")),
                "error": error[:_MAX_ERROR_CHARS],
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
        """Close the dispatcher if this engine made it, then stop recording sink failures."""
        with self._lock:
            dispatcher = self._dispatcher if self._owns_dispatcher else None
        if dispatcher is not None:
            dispatcher.close(timeout_s)
        with self._failure_lock:
            self._closed = True
            if self._failure_store is not None:
                self._failure_store.close()
                self._failure_store = None

    def __enter__(self) -> AlertEngine:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- episodes ---------------------------------------------------------------------------

    def _episode_started(
        self, moment: datetime, since: datetime, symbol: str, act: Action, rule: str | None,
        previous: _Episode | None,
    ) -> Alert:
        severity = EPISODE_SEVERITY[act]
        return self._emit(
            moment,
            severity,
            "safety",
            f"safety:{symbol}:{act.value}",
            f"{symbol}: {act.value} started",
            f"{symbol} is under {act.value}"
            + (f" (rule {rule})" if rule else " (no rule named)")
            + (f" since {format_utc(since)}" if since != moment else "")
            + (f"; it follows {previous.action.value}" if previous else ""),
            {
                "episode": "started",
                "symbol": symbol,
                "action": act.value,
                "rule": rule,
                "since": format_utc(since),
                "previous_action": previous.action.value if previous else None,
            },
        )

    def _episode_ended(
        self, clear_since: datetime, moment: datetime, symbol: str, episode: _Episode,
        now: Action,
    ) -> Alert:
        """The end of `episode`, confirmed at `moment`; its action was last in force the
        cycle before `clear_since`."""
        days = (clear_since - episode.since).days
        return self._emit(
            moment,
            Severity.INFO,
            "safety",
            f"safety:{symbol}:{episode.action.value}",
            f"{symbol}: {episode.action.value} ended",
            f"{symbol} was under {episode.action.value} from {format_utc(episode.since)} "
            f"to {format_utc(clear_since)} ({days} day(s)); now {now.value}",
            {
                "episode": "ended",
                "symbol": symbol,
                "action": episode.action.value,
                "rule": episode.rule,
                "since": format_utc(episode.since),
                "until": format_utc(clear_since),
                "days": days,
                "now": now.value,
                "started_alert_id": episode.alert_id,
            },
        )

    def _halted(self, moment: datetime, old: str | None, rule: str | None) -> Alert:
        alert = self._emit(
            moment,
            Severity.CRITICAL,
            "trading_state",
            "trading:halted",
            "Trading halted",
            "all trading is halted"
            + (f" by rule {rule}" if rule else "")
            + "; the halt is latched until a named person resumes",
            {"state": _HALTED, "previous_state": old, "rule": rule},
        )
        self._halt = _Halt(moment, rule, alert.alert_id)
        return alert

    def _latched(self, moment: datetime, rule: str | None) -> tuple[Alert, ...]:
        halt = self._halt if self._halt is not None else _Halt(moment, rule, "")
        if rule is not None:
            self._halt = replace(halt, quiet_since=None)
            return ()
        quiet_since = halt.quiet_since if halt.quiet_since is not None else moment
        due = halt.last_reminder is None or (
            moment - halt.last_reminder >= self.halt_reminder_every
        )
        if not due:
            self._halt = replace(halt, quiet_since=quiet_since)
            return ()
        halt = self._halt = replace(halt, quiet_since=quiet_since, last_reminder=moment)
        days = (moment - halt.since).days
        return (
            self._emit(
                moment,
                Severity.WARNING,
                "trading_state",
                "trading:halt_latched",
                "Halt still latched",
                f"trading has been halted for {days} day(s)"
                + (f"; rule {halt.rule} no longer fires" if halt.rule else "")
                + f" (since {format_utc(quiet_since)}); a named person must resume",
                {
                    "state": _HALTED,
                    "rule": halt.rule,
                    "halted_since": format_utc(halt.since),
                    "quiet_since": format_utc(quiet_since),
                    "days": days,
                    "halted_alert_id": halt.alert_id or None,
                },
            ),
        )

    def _resumed(self, moment: datetime, new: str, rule: str | None) -> Alert:
        halt, self._halt = self._halt, None
        since = halt.since if halt is not None else moment
        halted_alert_id = halt.alert_id if halt is not None and halt.alert_id else None
        days = (moment - since).days
        return self._emit(
            moment,
            Severity.INFO,
            "trading_state",
            "trading:halted",
            "Trading resumed",
            f"trading is {new} again after {days} day(s) halted"
            + (f" ({rule})" if rule else ""),
            {
                "state": new,
                "previous_state": _HALTED,
                "rule": rule,
                "halted_since": format_utc(since),
                "days": days,
                "halted_alert_id": halted_alert_id,
            },
        )

    # -- emitting ---------------------------------------------------------------------------

    def _emit(
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

    def _submit(self, alert: Alert) -> None:
        if self._dispatcher is not None:
            self._dispatcher.submit(alert)


def _moment(ts: str | datetime) -> datetime:
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            raise ValueError(f"event time {ts!r} has no time zone; give it in UTC")
        return parse_utc(format_utc(ts))
    try:
        return parse_utc(ts)
    except TimestampError as exc:
        raise ValueError(f"event time: {exc}") from None


def _name(label: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{label} must be a non-empty string, got {value!r}")
    return value


def _rule(rule: object) -> str | None:
    if rule is None:
        return None
    if not isinstance(rule, str) or not rule.strip():
        raise ValueError(f"rule must be a rule id or None, got {rule!r}")
    return rule


def _action(action: object) -> Action:
    if isinstance(action, Action):
        return action
    if isinstance(action, str) and action in _ACTION_VALUES:
        return Action(action)
    names = ", ".join(_ACTION_VALUES)
    raise ValueError(f"unknown safety action {action!r}; expected one of {names}")


def _trading_state(state: object) -> str:
    value = getattr(state, "value", state)
    if isinstance(value, str) and value.upper() in TRADING_STATES:
        return value.upper()
    raise ValueError(
        f"unknown trading state {state!r}; expected one of {', '.join(TRADING_STATES)}"
    )


def _age_text(age: timedelta) -> str:
    hours = age.total_seconds() / 3600
    return f"{hours / 24:g} day(s)" if hours >= 24 else f"{hours:g} hour(s)"
