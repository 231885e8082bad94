"""Episodes of the safety actions, per symbol: when one starts and ends, with hysteresis."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from engine.actions import Action
from engine.monitoring.alert import Alert, Severity
from engine.monitoring.alerting.recorder import AlertRecorder
from engine.policy.model import AlertSettings
from engine.timeutil import format_utc

#: The safety actions that open an episode, and how loud its start is.
EPISODE_SEVERITY: Mapping[Action, Severity] = {
    Action.HALT: Severity.CRITICAL,
    Action.FLATTEN: Severity.WARNING,
    Action.BLOCK_NEW: Severity.WARNING,
}


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


class SafetyEpisodes:
    """An episode of `flatten` or `block_new` opens, with a warning, once the action has held
    for `settings.min_duration` cycles; `halt` opens one at once, critical. An open episode
    closes, with one info alert, only after its action has been absent for
    `settings.clear_after` cycles, so an action that flickers on and off is one episode, not
    one a day. Moving to another alerting action that holds long enough ends one episode and
    starts the next; staying is silent. Its caller serialises the calls."""

    def __init__(self, recorder: AlertRecorder, settings: AlertSettings) -> None:
        self._recorder = recorder
        self._settings = settings
        self._tracks: dict[str, _Track] = {}

    def observe(
        self, moment: datetime, symbol: str, act: Action, rule: str | None
    ) -> tuple[Alert, ...]:
        """The safety action in force for `symbol` at `moment` (one call per cycle), and the
        rule that decided it."""
        track = self._tracks.get(symbol, _Track())
        episode = track.episode
        if episode is not None and episode.action is act:
            self._tracks[symbol] = _Track(episode)
            return ()
        if act in EPISODE_SEVERITY:
            held = track.candidate_cycles + 1 if track.candidate is act else 1
            since = track.candidate_since if track.candidate is act else moment
            track = replace(track, candidate=act, candidate_since=since, candidate_cycles=held)
        else:
            track = replace(track, candidate=None, candidate_since=None, candidate_cycles=0)
        if episode is not None:
            track = replace(track, clear_since=track.clear_since or moment,
                            clear_cycles=track.clear_cycles + 1)
        alerts: list[Alert] = []
        opens = track.candidate is not None and (
            track.candidate is Action.HALT
            or track.candidate_cycles >= self._settings.min_duration)
        if episode is not None and (opens or track.clear_cycles >= self._settings.clear_after):
            alerts.append(self._ended(track.clear_since or moment, moment, symbol, episode, act))
            track = _Track(None, track.candidate, track.candidate_since, track.candidate_cycles)
        if opens and track.candidate is not None:
            started = self._started(moment, track.candidate_since or moment, symbol,
                                    track.candidate, rule, episode)
            alerts.append(started)
            track = _Track(_Episode(act, track.candidate_since or moment, rule,
                                    started.alert_id))
        self._tracks[symbol] = track
        return tuple(alerts)

    def _started(
        self, moment: datetime, since: datetime, symbol: str, act: Action, rule: str | None,
        previous: _Episode | None,
    ) -> Alert:
        severity = EPISODE_SEVERITY[act]
        return self._recorder.emit(
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

    def _ended(
        self, clear_since: datetime, moment: datetime, symbol: str, episode: _Episode,
        now: Action,
    ) -> Alert:
        """The end of `episode`, confirmed at `moment`; its action was last in force the
        cycle before `clear_since`."""
        days = (clear_since - episode.since).days
        return self._recorder.emit(
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
