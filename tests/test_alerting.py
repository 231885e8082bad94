"""The alert engine against a real SQLite audit store and a real JSONL sink; metrics bounds."""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.actions import Action
from engine.audit.store import AuditStore
from engine.monitoring.alert import Alert
from engine.monitoring.alerting.engine import AlertEngine
from engine.monitoring.alerting.recorder import ALERT_KIND, SINK_FAILURE_KIND
from engine.monitoring.dispatch.records import SinkFailure
from engine.monitoring.metrics import Metrics
from engine.monitoring.sinks import JsonlSink, SinkError
from engine.policy.model import AlertSettings
from engine.policy.problems import Position, Problem

RUN = "run-test"
START = datetime(2008, 9, 1, 21, tzinfo=UTC)


def day(n: int) -> str:
    return (START + timedelta(days=n)).isoformat().replace("+00:00", "Z")


@pytest.fixture
def engine(store: AuditStore) -> Iterator[AlertEngine]:
    with AlertEngine(store, None, RUN) as e:
        yield e


def stored(store: AuditStore) -> list[dict[str, Any]]:
    return [r.body for r in store.iter_records(ALERT_KIND)]


def sev(alerts: list[dict[str, Any]]) -> list[object]:
    return [a["severity"] for a in alerts]


class FailingSink:
    name = "broken"

    def send(self, alert: Alert) -> None:
        raise SinkError("connection refused (test sink)")


# -- safety episodes ----------------------------------------------------------------------------


def test_a_thirty_day_halt_is_one_critical_alert_and_its_end(
    engine: AlertEngine, store: AuditStore
) -> None:
    raised: list[Alert] = []
    for n in range(30):
        raised += engine.on_safety(day(n), "SP500", Action.HALT, "drift-spike-halt")
    raised += engine.on_safety(day(30), "SP500", Action.ALLOW, None)
    assert sev(stored(store)) == ["critical"]  # one clear cycle does not close it yet
    raised += engine.on_safety(day(31), "SP500", Action.ALLOW, None)

    alerts = stored(store)
    assert sev(alerts) == ["critical", "info"]
    assert [a.alert_id for a in raised] == [a["alert_id"] for a in alerts]
    start, end = alerts
    assert start["ts"] == day(0) and end["ts"] == day(31)
    assert start["key"] == end["key"] == "safety:SP500:halt"
    assert start["context"]["rule"] == "drift-spike-halt"
    assert end["context"]["days"] == 30
    assert end["context"]["until"] == day(30)
    assert end["context"]["started_alert_id"] == start["alert_id"]
    assert end["context"]["now"] == "allow"


def test_a_flickering_halt_is_one_episode(engine: AlertEngine, store: AuditStore) -> None:
    pattern = ["halt", "allow", "halt", "halt", "allow", "halt", "allow", "allow"]
    for n, action in enumerate(pattern):
        engine.on_safety(day(n), "WTI", action, "drift-spike-halt" if action == "halt" else None)
    assert sev(stored(store)) == ["critical", "info"]


def test_without_hysteresis_every_change_is_an_alert_pair(store: AuditStore) -> None:
    with AlertEngine(store, None, RUN, settings=AlertSettings(1, 1)) as engine:
        pattern = ["halt", "allow", "halt", "halt", "allow", "halt", "allow"]
        for n, action in enumerate(pattern):
            engine.on_safety(day(n), "WTI", action, None)
    assert sev(stored(store)) == ["critical", "info"] * 3


def test_a_warning_waits_for_min_duration_and_names_when_it_began(
    engine: AlertEngine, store: AuditStore
) -> None:
    for n, action in enumerate(["block_new", "allow", "allow", "block_new", "block_new"]):
        engine.on_safety(day(n), "SP500", action, "coherence-break-block")
    alerts = stored(store)
    assert [(a["severity"], a["ts"]) for a in alerts] == [("warning", day(4))]
    assert alerts[0]["context"]["since"] == day(3)
    assert day(3) in alerts[0]["message"]


def test_a_change_of_restrictive_action_ends_one_episode_and_starts_the_next(
    engine: AlertEngine, store: AuditStore
) -> None:
    actions = ["halt", "flatten", "flatten", "block_new", "block_new", "allow", "allow"]
    for n, action in enumerate(actions):
        engine.on_safety(day(n), "NASDAQ", action, f"rule-{action}")
    alerts = stored(store)
    assert [(a["severity"], a["title"]) for a in alerts] == [
        ("critical", "NASDAQ: halt started"),
        ("info", "NASDAQ: halt ended"),
        ("warning", "NASDAQ: flatten started"),
        ("info", "NASDAQ: flatten ended"),
        ("warning", "NASDAQ: block_new started"),
        ("info", "NASDAQ: block_new ended"),
    ]
    assert alerts[2]["context"]["previous_action"] == "halt"


@settings(deadline=None, max_examples=40)
@given(st.lists(st.sampled_from(["halt", "flatten", "block_new", "wait_confirmation",
                                 "allow"]), max_size=40),
       st.integers(min_value=1, max_value=4), st.integers(min_value=1, max_value=4))
def test_no_halt_goes_unannounced(actions: list[str], min_duration: int,
                                  clear_after: int) -> None:
    """Whatever the settings, every cycle under halt lies in a halt episode whose critical
    alert was raised at or before it, and there are never more alerts than without
    hysteresis."""
    with tempfile.TemporaryDirectory() as tmp:
        store = AuditStore(Path(tmp) / "audit.db")
        raised = 0
        with AlertEngine(store, None, RUN,
                         settings=AlertSettings(min_duration, clear_after)) as engine:
            open_halt = False
            for n, action in enumerate(actions):
                for a in engine.on_safety(day(n), "SP500", action, None):
                    raised += 1
                    if a.title.endswith("halt ended"):
                        open_halt = False
                    if a.severity.value == "critical":
                        open_halt = True
                assert open_halt or action != "halt"
        with AlertEngine(store, None, "plain", settings=AlertSettings(1, 1)) as plain:
            baseline = sum(len(plain.on_safety(day(n), "SP500", a, None))
                           for n, a in enumerate(actions))
        assert raised <= baseline
        store.close()


def test_waiting_and_allowing_are_silent_and_symbols_are_independent(
    engine: AlertEngine, store: AuditStore
) -> None:
    for n in range(5):
        engine.on_safety(day(n), "SP500", "wait_confirmation" if n % 2 else "allow", None)
        engine.on_safety(day(n), "WTI", "block_new", "coherence-break-block")
    alerts = stored(store)
    assert [(a["key"], a["severity"]) for a in alerts] == [("safety:WTI:block_new", "warning")]


def test_an_unknown_action_or_bad_time_is_refused_with_its_value(engine: AlertEngine) -> None:
    with pytest.raises(ValueError, match="'stop'"):
        engine.on_safety(day(0), "SP500", "stop", None)
    with pytest.raises(ValueError, match="no time zone"):
        engine.on_safety(datetime(2008, 1, 1), "SP500", "halt", None)
    with pytest.raises(ValueError, match="event time"):
        engine.on_safety("2008-01-01", "SP500", "halt", None)


def test_alert_time_is_the_event_time_in_utc(engine: AlertEngine, store: AuditStore) -> None:
    local = datetime(2008, 10, 10, 23, 0, tzinfo=timezone(timedelta(hours=2)))
    (alert,) = engine.on_safety(local, "SP500", "halt", "drift-spike-halt")
    assert alert.ts == "2008-10-10T21:00:00Z"
    assert stored(store)[0]["ts"] == "2008-10-10T21:00:00Z"


# -- trading state ------------------------------------------------------------------------------


def test_a_latched_halt_reminds_once_per_period_after_its_rule_stops(
    engine: AlertEngine, store: AuditStore
) -> None:
    engine.on_trading_state(day(0), "ACTIVE", None)
    for n in range(1, 4):
        engine.on_trading_state(day(n), "HALTED", "drift-spike-halt")
    # The rule stops firing on day 4; the halt stays latched until day 24.
    for n in range(4, 24):
        engine.on_trading_state(day(n), "HALTED", None)
    engine.on_trading_state(day(24), "ACTIVE", "resumed by risk-desk")
    engine.on_trading_state(day(25), "ACTIVE", None)

    alerts = stored(store)
    assert [(a["severity"], a["key"], a["ts"]) for a in alerts] == [
        ("critical", "trading:halted", day(1)),
        ("warning", "trading:halt_latched", day(4)),
        ("warning", "trading:halt_latched", day(11)),
        ("warning", "trading:halt_latched", day(18)),
        ("info", "trading:halted", day(24)),
    ]
    assert alerts[-1]["context"]["days"] == 23


def test_a_halt_whose_rule_keeps_firing_is_not_repeated(
    engine: AlertEngine, store: AuditStore
) -> None:
    for n in range(40):
        engine.on_trading_state(day(n), "HALTED", "drift-spike-halt")
    engine.on_trading_state(day(40), "REDUCING", None)
    assert sev(stored(store)) == ["critical", "info"]


def test_reminders_stay_rate_limited_when_the_rule_flaps_during_a_halt(
    store: AuditStore,
) -> None:
    with AlertEngine(store, None, RUN, halt_reminder_every=timedelta(days=3)) as engine:
        engine.on_trading_state(day(0), "HALTED", "drift-spike-halt")
        for n in range(1, 7):
            engine.on_trading_state(day(n), "HALTED", None if n % 2 else "drift-spike-halt")
    reminders = [a["ts"] for a in stored(store) if a["key"] == "trading:halt_latched"]
    assert reminders == [day(1), day(5)]


def test_an_unknown_trading_state_is_refused(engine: AlertEngine) -> None:
    with pytest.raises(ValueError, match="'PAUSED'"):
        engine.on_trading_state(day(0), "PAUSED", None)


# -- approvals, policies, broker ----------------------------------------------------------------


def test_an_approval_wait_warns_once_per_item(engine: AlertEngine, store: AuditStore) -> None:
    assert engine.on_approval_waiting(day(0), "item-1", timedelta(hours=12)) == ()
    assert len(engine.on_approval_waiting(day(1), "item-1", timedelta(days=1))) == 1
    assert engine.on_approval_waiting(day(2), "item-1", timedelta(days=2)) == ()
    assert len(engine.on_approval_waiting(day(2), "item-2", timedelta(days=3))) == 1
    alerts = stored(store)
    assert [(a["severity"], a["key"]) for a in alerts] == [
        ("warning", "approval:waiting:item-1"),
        ("warning", "approval:waiting:item-2"),
    ]


def test_a_policy_failure_alerts_once_per_distinct_content(
    engine: AlertEngine, store: AuditStore
) -> None:
    a = Problem(Position("policies/safety.yaml", 12, 7), "unknown fact 'drfit_score'")
    b = "policies/rotation.yaml:3:1: missing 'spec'"
    assert len(engine.on_policy_load_failed(day(0), [a, b])) == 1
    assert engine.on_policy_load_failed(day(1), [b, a]) == ()
    assert engine.on_policy_load_failed(day(2), [str(a), b]) == ()
    assert len(engine.on_policy_load_failed(day(3), [a])) == 1
    alerts = stored(store)
    assert sev(alerts) == ["critical", "critical"]
    assert alerts[0]["context"]["problem_count"] == 2
    assert "drfit_score" in str(alerts[0]["message"])
    assert alerts[0]["key"] != alerts[1]["key"]


def test_a_broker_error_is_critical_and_a_retry_failing_alike_is_not_new(
    engine: AlertEngine, store: AuditStore
) -> None:
    engine.on_broker_error(day(0), "cid-1", "timeout")
    engine.on_broker_error(day(0), "cid-1", "timeout")
    engine.on_broker_error(day(0), "cid-1", "HTTP 503")
    engine.on_broker_error(day(1), "cid-2", "timeout")
    alerts = stored(store)
    assert [(a["severity"], a["message"]) for a in alerts] == [
        ("critical", "order cid-1: timeout"),
        ("critical", "order cid-1: HTTP 503"),
        ("critical", "order cid-2: timeout"),
    ]


# -- persistence and dispatch -------------------------------------------------------------------


def test_alerts_persist_with_run_id_sortable_ids_and_an_intact_chain(db: Path) -> None:
    with AuditStore(db) as store, AlertEngine(store, None, RUN) as engine:
        raised: list[Alert] = []
        for n, action in enumerate(["halt", "allow", "flatten", "allow", "block_new"]):
            raised += engine.on_safety(day(n), "SP500", action, "r")
        raised += engine.on_broker_error(day(6), "cid-9", "refused")
    with AuditStore(db, create=False) as reopened:
        records = list(reopened.iter_records(ALERT_KIND))
        assert reopened.verify().ok
    assert [r.ref for r in records] == [a.alert_id for a in raised]
    assert sorted(r.ref for r in records) == [r.ref for r in records]
    for record, alert in zip(records, raised, strict=True):
        assert record.body == {**alert.to_json(), "run_id": RUN}
        assert Alert.from_json({k: v for k, v in record.body.items() if k != "run_id"}) == alert
        assert record.body["context"]["run_id"] == RUN


def test_alerts_reach_a_real_jsonl_sink(store: AuditStore, tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    engine = AlertEngine.with_sinks(store, [JsonlSink(path)], RUN)
    engine.on_safety(day(0), "SP500", "halt", "drift-spike-halt")
    engine.on_safety(day(3), "SP500", "allow", None)
    engine.on_safety(day(4), "SP500", "allow", None)
    engine.on_trading_state(day(4), "HALTED", "drift-spike-halt")
    engine.close()
    sent = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    kept = stored(store)
    assert [a["alert_id"] for a in sent] == [a["alert_id"] for a in kept]
    assert [a["severity"] for a in sent] == ["critical", "info", "critical"]
    assert store.count(SINK_FAILURE_KIND) == 0


def test_a_failing_sink_is_recorded_without_raising_or_alerting(
    store: AuditStore, tmp_path: Path
) -> None:
    good = tmp_path / "alerts.jsonl"
    engine = AlertEngine.with_sinks(store, [FailingSink(), JsonlSink(good)], RUN)
    (alert,) = engine.on_broker_error(day(0), "cid-1", "refused")
    engine.close()
    failures = [r.body for r in store.iter_records(SINK_FAILURE_KIND)]
    assert failures and {f["alert_id"] for f in failures} == {alert.alert_id}
    assert {f["sink"] for f in failures} == {"broken"}
    assert all(f["run_id"] == RUN and "connection refused" in str(f["error"]) for f in failures)
    # The failure itself raised no alert, and the healthy sink still got the one alert.
    assert store.count(ALERT_KIND) == 1
    assert len(good.read_text(encoding="utf-8").splitlines()) == 1
    assert engine.metrics.value("alerts.sink_failures") == len(failures)
    assert store.verify().ok


def test_on_sink_failure_never_raises(store: AuditStore) -> None:
    engine = AlertEngine(store, None, RUN)
    engine.on_sink_failure("not a failure report")  # type: ignore[arg-type]
    engine.close()
    engine.on_sink_failure(SinkFailure("jsonl", "a-1", "late", "2008-01-01T00:00:00.000Z"))
    assert [r.body["error"] for r in store.iter_records(SINK_FAILURE_KIND)] == [
        "not a failure report"
    ]


def test_sink_failures_from_another_thread_keep_the_chain_intact(store: AuditStore) -> None:
    engine = AlertEngine(store, None, RUN, settings=AlertSettings(1, 1))

    def report() -> None:
        for i in range(40):
            engine.on_sink_failure(SinkFailure("webhook", f"a-{i}", "HTTP 500", day(0)))

    worker = threading.Thread(target=report)
    worker.start()
    for n in range(40):
        store.append("cycle", f"{RUN}:{day(n)}", {"run_id": RUN, "ts": day(n)})
        engine.on_safety(day(n), "SP500", "halt" if n % 2 else "allow", "r")
    worker.join()
    assert store.count(SINK_FAILURE_KIND) == 40
    assert store.count(ALERT_KIND) == 39  # day 0 is clear; every later day turns
    assert store.verify().ok
    engine.close()


def test_alert_counts_are_kept_as_metrics(engine: AlertEngine) -> None:
    engine.on_safety(day(0), "SP500", "halt", "r")
    engine.on_safety(day(1), "SP500", "flatten", "r")
    engine.on_safety(day(2), "SP500", "flatten", "r")
    assert engine.metrics.value("alerts.critical") == 1
    assert engine.metrics.value("alerts.warning") == 1
    assert engine.metrics.value("alerts.info") == 1


# -- metrics ------------------------------------------------------------------------------------


def test_metrics_history_is_bounded() -> None:
    metrics = Metrics(max_points=5, max_series=2)
    for n in range(100):
        metrics.inc("orders.sent", ts=day(n))
        metrics.set("equity", 1000.0 + n, ts=day(n))
    metrics.inc("third.series")
    snap = metrics.snapshot()
    sent = snap.series["orders.sent"]
    assert sent.value == 100
    assert [v for _, v in sent.points] == [96, 97, 98, 99, 100]
    assert sent.points[-1][0] == day(99)
    assert sent.dropped_points == 95
    assert snap.gauges == {"equity": 1099.0}
    assert "third.series" not in snap.series
    assert snap.dropped_series_updates == 1
    assert json.loads(json.dumps(snap.to_json()))["counters"] == {"orders.sent": 100}


def test_metrics_refuse_bad_values() -> None:
    metrics = Metrics()
    with pytest.raises(ValueError, match="nan"):
        metrics.set("equity", float("nan"))
    with pytest.raises(ValueError, match="only grow"):
        metrics.inc("orders", -1)
    metrics.inc("orders")
    with pytest.raises(ValueError, match="is a counter"):
        metrics.set("orders", 3)
    with pytest.raises(ValueError, match="max_points"):
        Metrics(max_points=0)


@given(
    st.integers(min_value=1, max_value=20),
    st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), max_size=80),
)
def test_a_counter_keeps_its_total_and_at_most_max_points(
    max_points: int, increments: list[float]
) -> None:
    metrics = Metrics(max_points=max_points)
    for amount in increments:
        metrics.inc("c", amount, ts="2008-01-01T00:00:00Z")
    snap = metrics.snapshot()
    if not increments:
        assert "c" not in snap.series
        return
    series = snap.series["c"]
    assert len(series.points) == min(len(increments), max_points)
    assert series.dropped_points == len(increments) - len(series.points)
    assert series.value == pytest.approx(sum(increments))
    assert series.points[-1][1] == series.value

