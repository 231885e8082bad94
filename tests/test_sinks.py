"""Alerts, sinks, the dispatcher and sink configuration, against real files and HTTP servers."""

from __future__ import annotations

import io
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.actions import Action
from engine.monitoring.alert import Alert, Severity
from engine.monitoring.dispatch import NOT_DELIVERED, AlertDispatcher
from engine.monitoring.dispatch.records import SinkFailure
from engine.monitoring.sink_config import SinkConfigError, load_sinks
from engine.monitoring.sinks import (
    AppriseSink,
    ConsoleSink,
    JsonlSink,
    SeverityFilter,
    SinkError,
    WebhookSink,
)
from tests.http_recorder import HttpRecorder

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "sinks.example.yaml"
WAIT_S = 5.0


# -- helpers ------------------------------------------------------------------------------------


def make_alert(
    alert_id: str = "a-1", severity: Severity = Severity.CRITICAL, **kw: object
) -> Alert:
    fields: dict[str, object] = {
        "ts": "2025-03-04T05:06:07.890Z",
        "kind": "safety",
        "key": "safety:SP500:halt",
        "title": "Halt trading on SP500",
        "message": "drift_score 0.91 >= 0.8 (rule drift-spike-halt)",
        "context": {"symbol": "SP500", "drift_score": 0.91, "action": Action.HALT},
    }
    fields.update(kw)
    return Alert(alert_id=alert_id, severity=severity, **fields)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _direct_to_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    # Requests to 127.0.0.1 must never be routed through a proxy from the environment.
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def server() -> Iterator[HttpRecorder]:
    recorder = HttpRecorder(200)
    yield recorder
    recorder.close()


@pytest.fixture
def failing_server() -> Iterator[HttpRecorder]:
    recorder = HttpRecorder(500)
    yield recorder
    recorder.close()


class Failures:
    """Collects `SinkFailure`s; `on_failure` for the dispatcher."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[SinkFailure] = []

    def __call__(self, failure: SinkFailure) -> None:
        with self._lock:
            self.items.append(failure)

    def snapshot(self) -> list[SinkFailure]:
        with self._lock:
            return list(self.items)


class RecordingSink:
    def __init__(self, name: str = "recording") -> None:
        self.name = name
        self.alerts: list[Alert] = []

    def send(self, alert: Alert) -> None:
        self.alerts.append(alert)


class FailingSink:
    def __init__(self, name: str = "failing") -> None:
        self.name = name
        self.calls = 0

    def send(self, alert: Alert) -> None:
        self.calls += 1
        raise RuntimeError("boom")


class HangingSink:
    """A sink whose `send` blocks until the test releases it (never longer than the cap)."""

    def __init__(self, name: str = "hanging") -> None:
        self.name = name
        self.entered = threading.Event()
        self.release = threading.Event()
        self.returned: list[str] = []

    def send(self, alert: Alert) -> None:
        self.entered.set()
        self.release.wait(timeout=30.0)
        self.returned.append(alert.alert_id)


def wait_until(predicate: Callable[[], bool], timeout_s: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def jsonl_ids(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line)["alert_id"] for line in path.read_text().splitlines()]


# -- alert --------------------------------------------------------------------------------------


def test_alert_json_round_trip_and_frozen_context() -> None:
    alert = make_alert(context={"x": float("nan"), "nested": {"values": [1, 2]}, "a": Action.HALT})
    data = alert.to_json()
    assert data["context"] == {"x": "nan", "nested": {"values": [1, 2]}, "a": "halt"}
    assert data["severity"] == "critical"
    json.dumps(data, allow_nan=False)
    assert Alert.from_json(json.loads(json.dumps(data))) == alert
    with pytest.raises(TypeError):
        alert.context["x"] = 1  # type: ignore[index]


@given(
    context=st.dictionaries(
        st.text(max_size=8),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
            max_leaves=8,
        ),
        max_size=4,
    ),
    severity=st.sampled_from(list(Severity)),
)
def test_alert_round_trip_property(context: dict[str, object], severity: Severity) -> None:
    alert = make_alert(severity=severity, context=context)
    text = json.dumps(alert.to_json(), allow_nan=False)
    assert Alert.from_json(json.loads(text)) == alert


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("ts", "2025-03-04T05:06:07", "ending in 'Z'"),
        ("ts", "yesterdayZ", "ending in 'Z'"),
        ("key", "  ", "'key'"),
        ("severity", "loud", "unknown severity 'loud'"),
        ("context", ["not", "a", "mapping"], "'context'"),
    ],
)
def test_alert_rejects_bad_fields(field: str, value: object, needle: str) -> None:
    data = make_alert().to_json()
    data[field] = value
    with pytest.raises(ValueError, match=needle):
        Alert.from_json(data)


def test_alert_from_json_rejects_unknown_and_missing_fields() -> None:
    data = make_alert().to_json()
    with pytest.raises(ValueError, match="unknown alert field"):
        Alert.from_json({**data, "sevrity": "info"})
    del data["title"]
    with pytest.raises(ValueError, match=r"missing alert field.*title"):
        Alert.from_json(data)


# -- sinks --------------------------------------------------------------------------------------


def test_console_sink_writes_one_readable_line() -> None:
    stream = io.StringIO()
    ConsoleSink(stream).send(make_alert(message="line one\nline two"))
    text = stream.getvalue()
    assert text.count("\n") == 1
    assert "CRITICAL" in text
    assert "[safety:SP500:halt]" in text
    assert "Halt trading on SP500" in text
    assert "line one\\nline two" in text
    assert "symbol=SP500" in text


def test_jsonl_sink_appends_one_object_per_line(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "alerts.jsonl"
    sink = JsonlSink(path)
    first, second = make_alert("a-1"), make_alert("a-2", Severity.INFO, message="ünïcode")
    sink.send(first)
    sink.send(second)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    assert [Alert.from_json(json.loads(line)) for line in lines] == [first, second]
    assert json.loads(lines[1])["message"] == "ünïcode"


def test_webhook_posts_slack_compatible_json(server: HttpRecorder) -> None:
    sink = WebhookSink(server.url("/services/T0/B0/secret"), timeout_s=5, headers={"X-Env": "t"})
    sink.send(make_alert(message="a <b> & c"))
    request = server.next_request()
    assert request.path == "/services/T0/B0/secret"
    assert request.headers["Content-Type"].startswith("application/json")
    assert request.headers["X-Env"] == "t"
    body = request.json()
    assert body["text"] == "[CRITICAL] Halt trading on SP500"
    attachments = body["attachments"]
    assert isinstance(attachments, list)
    [attachment] = attachments
    assert attachment["title"] == "Halt trading on SP500"
    assert attachment["text"] == "a &lt;b&gt; &amp; c"
    assert attachment["color"] == "#EB5757"
    assert "safety:SP500:halt" in attachment["footer"]
    fields = {f["title"]: f["value"] for f in attachment["fields"]}
    assert fields == {"symbol": "SP500", "drift_score": "0.91", "action": "halt"}


def test_webhook_non_2xx_raises_without_leaking_the_secret_path(
    failing_server: HttpRecorder,
) -> None:
    sink = WebhookSink(failing_server.url("/services/T0/B0/secret"))
    with pytest.raises(SinkError, match="HTTP 500") as info:
        sink.send(make_alert())
    assert "secret" not in str(info.value)
    assert failing_server.next_request().path == "/services/T0/B0/secret"


def test_webhook_rejects_bad_urls_and_timeouts() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        WebhookSink("ftp://127.0.0.1/x")
    with pytest.raises(ValueError, match="timeout_s"):
        WebhookSink("http://127.0.0.1/x", timeout_s=math.inf)


def test_apprise_json_url_posts_title_and_message(server: HttpRecorder) -> None:
    sink = AppriseSink([server.url("/alerts", scheme="json")], timeout_s=5)
    sink.send(make_alert())
    request = server.next_request()
    assert request.path == "/alerts"
    body = request.json()
    assert body["version"] == "1.0"
    assert body["title"] == "[CRITICAL] Halt trading on SP500"
    message = body["message"]
    assert isinstance(message, str)
    assert message.startswith("drift_score 0.91 >= 0.8 (rule drift-spike-halt)")
    assert "key: safety:SP500:halt" in message
    assert "symbol: SP500" in message
    assert body["type"] == "failure"


def test_apprise_raises_when_a_notification_fails(failing_server: HttpRecorder) -> None:
    sink = AppriseSink([failing_server.url("/alerts", scheme="json")], timeout_s=5)
    with pytest.raises(SinkError, match="apprise failure: 1 of 1"):
        sink.send(make_alert(severity=Severity.WARNING))
    assert failing_server.next_request().json()["type"] == "warning"


def test_apprise_rejects_an_invalid_url_naming_only_its_scheme() -> None:
    with pytest.raises(ValueError, match=r"#2 \(nonsense://...\)") as info:
        AppriseSink(["json://127.0.0.1/x", "nonsense://user:hunter2@host"])
    assert "hunter2" not in str(info.value)


def test_severity_filter_passes_only_at_or_above_minimum() -> None:
    inner = RecordingSink()
    sink = SeverityFilter(inner, "warning")
    for severity in Severity:
        sink.send(make_alert(severity.value, severity))
    assert [a.alert_id for a in inner.alerts] == ["warning", "critical"]


# -- dispatcher ---------------------------------------------------------------------------------


def test_dispatcher_delivers_to_every_sink_and_records_timings(tmp_path: Path) -> None:
    failures = Failures()
    recording = RecordingSink()
    path = tmp_path / "alerts.jsonl"
    with AlertDispatcher([recording, JsonlSink(path)], on_failure=failures, max_samples=3) as d:
        for i in range(5):
            assert d.submit(make_alert(f"a-{i}")) == 2
        assert d.flush(WAIT_S)
        stats = d.stats()
    assert [a.alert_id for a in recording.alerts] == [f"a-{i}" for i in range(5)]
    assert jsonl_ids(path) == [f"a-{i}" for i in range(5)]
    assert failures.snapshot() == []
    assert (stats.sent, stats.failed, stats.dropped) == (10, 0, 0)
    assert len(stats.samples) == 3
    assert all(s.ok and s.handoff_s >= 0 and s.send_s >= 0 for s in stats.samples)


def test_webhook_500_is_reported_after_bounded_retries(failing_server: HttpRecorder) -> None:
    failures = Failures()
    sink = WebhookSink(failing_server.url("/hook"))
    with AlertDispatcher([sink], on_failure=failures, max_tries=2, retry_backoff_s=0.01) as d:
        d.submit(make_alert("a-500"))
        assert d.flush(WAIT_S)
        stats = d.stats()
    [failure] = failures.snapshot()
    assert failure.sink == "webhook"
    assert failure.alert_id == "a-500"
    assert "send failed after 2 tries" in failure.error
    assert "HTTP 500" in failure.error
    assert failure.ts.endswith("Z")
    assert failing_server.requests.qsize() == 2
    assert (stats.sent, stats.failed) == (0, 1)
    assert [s.ok for s in stats.samples] == [False]


def test_hanging_sink_delays_neither_submit_nor_other_sinks(tmp_path: Path) -> None:
    failures = Failures()
    hanging = HangingSink()
    path = tmp_path / "alerts.jsonl"
    dispatcher = AlertDispatcher([hanging, JsonlSink(path)], on_failure=failures)
    try:
        assert dispatcher.submit(make_alert("a-1")) == 2
        assert hanging.entered.wait(WAIT_S)
        # The hanging send is still blocked: only the test releases it.
        assert dispatcher.submit(make_alert("a-2")) == 2
        assert wait_until(lambda: jsonl_ids(path) == ["a-1", "a-2"])
        assert hanging.returned == []
        assert dispatcher.close(timeout_s=0.2) is False
        assert hanging.returned == []
        reported = {(f.sink, f.alert_id): f.error for f in failures.snapshot()}
        assert set(reported) == {("hanging", "a-1"), ("hanging", "a-2")}
        assert reported["hanging", "a-1"].startswith(NOT_DELIVERED)
        assert reported["hanging", "a-2"] == NOT_DELIVERED
        stats = {s.name: s for s in dispatcher.stats().sinks}
        assert (stats["jsonl"].sent, stats["jsonl"].failed) == (2, 0)
        assert (stats["hanging"].sent, stats["hanging"].failed) == (0, 2)
    finally:
        hanging.release.set()


def test_full_queue_drops_and_reports() -> None:
    failures = Failures()
    hanging = HangingSink()
    dispatcher = AlertDispatcher([hanging], on_failure=failures, queue_size=1)
    try:
        assert dispatcher.submit(make_alert("in-flight")) == 1
        assert hanging.entered.wait(WAIT_S)
        assert dispatcher.submit(make_alert("queued")) == 1
        assert dispatcher.submit(make_alert("dropped")) == 0
        assert wait_until(lambda: len(failures.snapshot()) == 1)
        [failure] = failures.snapshot()
        assert (failure.sink, failure.alert_id) == ("hanging", "dropped")
        assert "queue full" in failure.error
        assert dispatcher.stats().dropped == 1
        dispatcher.close(timeout_s=0.1)
        assert {f.alert_id for f in failures.snapshot()} == {"in-flight", "queued", "dropped"}
    finally:
        hanging.release.set()


def test_send_timeout_reports_and_the_sink_resumes_after_it_returns() -> None:
    failures = Failures()
    hanging = HangingSink()
    with AlertDispatcher([hanging], on_failure=failures, send_timeout_s=0.1) as dispatcher:
        dispatcher.submit(make_alert("slow"))
        assert wait_until(lambda: len(failures.snapshot()) == 1)
        [failure] = failures.snapshot()
        assert failure.alert_id == "slow"
        assert "did not return within 0.1 s" in failure.error
        dispatcher.submit(make_alert("next"))
        hanging.release.set()
        assert dispatcher.flush(WAIT_S)
    assert hanging.returned == ["slow", "next"]
    assert len(failures.snapshot()) == 1


def test_failing_sink_is_retried_then_reported() -> None:
    failures = Failures()
    failing = FailingSink()
    with AlertDispatcher([failing], on_failure=failures, max_tries=3, retry_backoff_s=0) as d:
        d.submit(make_alert())
        assert d.flush(WAIT_S)
    assert failing.calls == 3
    [failure] = failures.snapshot()
    assert failure.error == "send failed after 3 tries: RuntimeError: boom"


def test_on_failure_that_raises_does_not_stop_delivery() -> None:
    def explode(failure: SinkFailure) -> None:
        raise RuntimeError("callback broke")

    recording = RecordingSink()
    with AlertDispatcher(
        [FailingSink(), recording], on_failure=explode, max_tries=1, retry_backoff_s=0
    ) as dispatcher:
        dispatcher.submit(make_alert("a-1"))
        assert dispatcher.flush(WAIT_S)
        dispatcher.submit(make_alert("a-2"))
        assert dispatcher.flush(WAIT_S)
        assert dispatcher.stats().on_failure_errors == 2
    assert [a.alert_id for a in recording.alerts] == ["a-1", "a-2"]


def test_severity_filter_in_dispatcher_counts_filtered() -> None:
    failures = Failures()
    warn, everything = RecordingSink("warn"), RecordingSink("all")
    with AlertDispatcher(
        [SeverityFilter(warn, Severity.WARNING), everything], on_failure=failures
    ) as d:
        assert d.submit(make_alert("i", Severity.INFO)) == 1
        assert d.submit(make_alert("c", Severity.CRITICAL)) == 2
        assert d.flush(WAIT_S)
        stats = {s.name: s for s in d.stats().sinks}
    assert [a.alert_id for a in warn.alerts] == ["c"]
    assert [a.alert_id for a in everything.alerts] == ["i", "c"]
    assert (stats["warn"].filtered, stats["warn"].sent) == (1, 1)


def test_submit_never_raises_on_junk_or_after_close() -> None:
    failures = Failures()
    dispatcher = AlertDispatcher([RecordingSink()], on_failure=failures)
    assert dispatcher.submit("not an alert") == 0  # type: ignore[arg-type]
    assert dispatcher.flush(WAIT_S)
    [failure] = failures.snapshot()
    assert "not an Alert: str" in failure.error
    assert dispatcher.close(WAIT_S) is True
    assert dispatcher.submit(make_alert()) == 0
    assert dispatcher.stats().dropped == 2


def test_dispatcher_rejects_bad_construction() -> None:
    with pytest.raises(ValueError, match="non-empty list of sinks"):
        AlertDispatcher([], on_failure=Failures())
    with pytest.raises(ValueError, match="named 'same'"):
        AlertDispatcher([RecordingSink("same"), RecordingSink("same")], on_failure=Failures())
    with pytest.raises(ValueError, match="send_timeout_s"):
        AlertDispatcher([RecordingSink()], on_failure=Failures(), send_timeout_s=math.nan)


# -- configuration ------------------------------------------------------------------------------


def test_example_config_loads(tmp_path: Path) -> None:
    sinks = load_sinks(EXAMPLE, base_dir=tmp_path)
    assert [s.name for s in sinks] == ["console", "jsonl", "webhook", "apprise"]
    console, jsonl, webhook, apprise_sink = sinks
    assert isinstance(console, ConsoleSink)
    assert isinstance(jsonl, JsonlSink)
    assert jsonl.path == tmp_path / ".fugger" / "alerts.jsonl"
    assert isinstance(webhook, SeverityFilter)
    assert isinstance(webhook.sink, WebhookSink)
    assert webhook.min_severity is Severity.WARNING
    assert isinstance(apprise_sink, SeverityFilter)
    assert isinstance(apprise_sink.sink, AppriseSink)


def test_config_sinks_deliver_with_their_severity_filters(
    tmp_path: Path, server: HttpRecorder
) -> None:
    config = tmp_path / "sinks.yaml"
    config.write_text(
        "sinks:\n"
        "  - type: jsonl\n"
        "    path: out/alerts.jsonl\n"
        "    min_severity: warning\n"
        "  - type: webhook\n"
        f"    url: {server.url('/hook')}\n"
        "    timeout_s: 2\n"
        "    name: slack\n"
    )
    sinks = load_sinks(config, base_dir=tmp_path)
    failures = Failures()
    with AlertDispatcher(sinks, on_failure=failures) as dispatcher:
        dispatcher.submit(make_alert("info", Severity.INFO))
        dispatcher.submit(make_alert("crit", Severity.CRITICAL))
        assert dispatcher.flush(WAIT_S)
    assert jsonl_ids(tmp_path / "out" / "alerts.jsonl") == ["crit"]
    assert [server.next_request().json()["text"] for _ in range(2)] == [
        "[INFO] Halt trading on SP500",
        "[CRITICAL] Halt trading on SP500",
    ]
    assert failures.snapshot() == []


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("sinks:\n  - type: console\n  - type: webhok\n", 3, "sinks[1].type: unknown sink type"),
        ("sinks:\n  - type: webhook\n    timeout_s: 5\n", 2, "sinks[0]: missing 'url'"),
        (
            "sinks:\n  - type: jsonl\n    path: a.jsonl\n    min_severity: loud\n",
            4,
            "sinks[0].min_severity: unknown severity 'loud'",
        ),
        ("- type: console\n", 1, "expected a mapping with a 'sinks' list"),
        ("sinks:\n  - console\n", 2, "sinks[0]: must be a mapping with a 'type'"),
        ("sinks: [\n  - type: x\n", 2, "YAML error"),
        ("sinks:\n  - type: webhook\n    url: ftp://x/y\n", 3, "sinks[0].url: webhook url"),
        (
            "sinks:\n  - type: webhook\n    url: https://x/y\n    tiemout_s: 3\n",
            4,
            "sinks[0].tiemout_s: unknown key for a webhook sink; did you mean 'timeout_s'?",
        ),
        ("sinks:\n  - type: apprise\n    urls: [nonsense://abc]\n", 3, "sinks[0].urls: apprise"),
        ("sinks: []\n", 1, "sinks: is empty"),
        ("sinks:\n  - type: console\n    stream: tty\n", 3, "sinks[0].stream: must be one of"),
    ],
)
def test_bad_config_names_file_line_and_key(
    tmp_path: Path, text: str, line: int, needle: str
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    with pytest.raises(SinkConfigError) as info:
        load_sinks(config, base_dir=tmp_path)
    message = str(info.value)
    assert message.startswith(f"{config}:{line}:"), message
    assert needle in message


def test_missing_or_empty_config_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SinkConfigError, match=r"nope\.yaml: sink config file not found"):
        load_sinks(missing)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(SinkConfigError, match=r"empty\.yaml: the file is empty"):
        load_sinks(empty)
