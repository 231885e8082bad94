"""Where alerts go: the console, a JSONL file, a Slack-compatible webhook, Apprise URLs.

Every sink's `send` either delivers the alert or raises; none retries or queues, that is the
dispatcher's job. A sink configured with credentials lists them in `secrets`, and no text it
raises carries them (see `engine.monitoring.redact`).
"""

from __future__ import annotations

import http.client
import json
import math
import os
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol, TextIO, runtime_checkable
from urllib.parse import urlsplit

from engine.monitoring.alert import Alert, Severity, parse_utc_timestamp, to_plain
from engine.monitoring.redact import Redactor, url_secrets


class SinkError(RuntimeError):
    """A sink could not deliver an alert."""


@runtime_checkable
class Sink(Protocol):
    """Delivers one alert or raises; `name` identifies the sink in stats and failure reports."""

    name: str

    def send(self, alert: Alert) -> None: ...


def sink_secrets(sink: object) -> tuple[str, ...]:
    """The credentials `sink` was configured with (none for a sink that does not say)."""
    secrets = getattr(sink, "secrets", ())
    return tuple(s for s in secrets if isinstance(s, str)) if isinstance(secrets, tuple) else ()


class SeverityFilter:
    """Passes on to `sink` only alerts of `min_severity` or above."""

    def __init__(self, sink: Sink, min_severity: Severity | str) -> None:
        self.sink = sink
        self.name = sink.name
        self.min_severity = Severity.parse(min_severity)

    @property
    def secrets(self) -> tuple[str, ...]:
        return sink_secrets(self.sink)

    def accepts(self, alert: Alert) -> bool:
        return alert.severity.rank >= self.min_severity.rank

    def send(self, alert: Alert) -> None:
        if self.accepts(alert):
            self.sink.send(alert)

    def __repr__(self) -> str:
        return f"SeverityFilter({self.sink!r}, min_severity={self.min_severity.value!r})"


def format_line(alert: Alert) -> str:
    """One readable line: time, severity, key, title, message and the context."""
    parts = [
        alert.ts,
        alert.severity.value.upper(),
        f"[{alert.key}]",
        f"{_one_line(alert.title)}: {_one_line(alert.message)}",
    ]
    if alert.context:
        parts.append("|")
        parts.append(" ".join(f"{k}={_one_line(_text(v))}" for k, v in alert.context.items()))
    return " ".join(parts)


class ConsoleSink:
    """Writes one line per alert to a text stream (standard error unless told otherwise)."""

    def __init__(self, stream: TextIO | None = None, *, name: str = "console") -> None:
        self.name = name
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, alert: Alert) -> None:
        # Resolved per call so a redirected sys.stderr is honoured.
        stream = self._stream if self._stream is not None else sys.stderr
        with self._lock:
            stream.write(format_line(alert) + "\n")
            stream.flush()

    def __repr__(self) -> str:
        return f"ConsoleSink(name={self.name!r})"


class JsonlSink:
    """Appends one JSON object per alert to a file, flushed and fsynced before `send` returns."""

    def __init__(self, path: str | os.PathLike[str], *, name: str = "jsonl") -> None:
        self.name = name
        self.path = Path(path)
        self._lock = threading.Lock()

    def send(self, alert: Alert) -> None:
        line = json.dumps(alert.to_json(), ensure_ascii=False, sort_keys=True, allow_nan=False)
        data = (line + "\n").encode("utf-8")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # One O_APPEND write per record keeps lines whole when several processes append.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)

    def __repr__(self) -> str:
        return f"JsonlSink({str(self.path)!r}, name={self.name!r})"


_SLACK_COLOURS: dict[Severity, str] = {
    Severity.INFO: "#2F80ED",
    Severity.WARNING: "#F2C94C",
    Severity.CRITICAL: "#EB5757",
}
_SLACK_MAX_FIELDS = 10
_SLACK_MAX_VALUE = 300
_SLACK_MAX_MESSAGE = 3000
_RESPONSE_READ_LIMIT = 64 * 1024


def slack_payload(alert: Alert) -> dict[str, object]:
    """The Slack incoming-webhook body for `alert` (also accepted by Mattermost and Rocket.Chat)."""
    headline = f"[{alert.severity.value.upper()}] {alert.title}"
    fields = [
        {
            "title": _slack_escape(k),
            "value": _slack_escape(_truncate(_text(v), _SLACK_MAX_VALUE)),
            "short": True,
        }
        for k, v in list(alert.context.items())[:_SLACK_MAX_FIELDS]
    ]
    return {
        "text": _slack_escape(headline),
        "attachments": [
            {
                "fallback": _slack_escape(f"{headline}: {_truncate(alert.message, 200)}"),
                "color": _SLACK_COLOURS[alert.severity],
                "title": _slack_escape(alert.title),
                "text": _slack_escape(_truncate(alert.message, _SLACK_MAX_MESSAGE)),
                "fields": fields,
                "footer": _slack_escape(f"{alert.kind} | {alert.key} | {alert.alert_id}"),
                "ts": int(parse_utc_timestamp(alert.ts).timestamp()),
            }
        ],
    }


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirected POST would be replayed as a GET whose 200 looks like a delivery.
    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: object,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


class WebhookSink:
    """POSTs a Slack-compatible JSON body to `url`; raises `SinkError` unless the answer is 2xx."""

    def __init__(
        self,
        url: str,
        timeout_s: float = 5.0,
        headers: Mapping[str, str] | None = None,
        *,
        name: str = "webhook",
    ) -> None:
        self.name = name
        self.url = _check_http_url(url)
        self.timeout_s = _check_timeout(timeout_s)
        self.headers = dict(headers or {})
        for k, v in self.headers.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise ValueError(f"webhook header {k!r}: names and values must be strings")
        # Every header value counts as a credential: which ones are is not ours to guess.
        self.secrets = (*url_secrets(self.url), *self.headers.values())
        self._redact = Redactor.of(self.secrets)
        self._opener = urllib.request.build_opener(_NoRedirect())

    def send(self, alert: Alert) -> None:
        body = json.dumps(slack_payload(alert), ensure_ascii=False).encode("utf-8")
        request = urllib.request.Request(self.url, data=body, method="POST")
        request.add_header("Content-Type", "application/json; charset=utf-8")
        for k, v in self.headers.items():
            request.add_header(k, v)
        where = redact_url(self.url)
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                status = int(response.status)
                response.read(_RESPONSE_READ_LIMIT)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise SinkError(f"webhook {where} answered HTTP {exc.code}") from None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            # The standard library quotes a header value or path it refuses, as it was given.
            raise SinkError(f"webhook {where} unreachable: {self._redact(str(reason))}") from None
        if not 200 <= status < 300:
            raise SinkError(f"webhook {where} answered HTTP {status}")

    def __repr__(self) -> str:
        return f"WebhookSink({redact_url(self.url)!r}, name={self.name!r})"


if TYPE_CHECKING:
    import apprise

#: The Apprise notification type of each severity, by name: apprise is imported by the
#: first Apprise sink made, not by every command that may raise an alert.
_APPRISE_TYPES: dict[Severity, str] = {
    Severity.INFO: "INFO",
    Severity.WARNING: "WARNING",
    Severity.CRITICAL: "FAILURE",
}


class AppriseSink:
    """Sends through Apprise URLs (chat, e-mail, SMS, `json://` ...); raises if any one fails.

    `timeout_s` bounds the whole notification (Apprise's per-connection timeouts apply within);
    the default stays under the dispatcher's default send timeout so Apprise's reason is kept.
    """

    def __init__(
        self, urls: Sequence[str], timeout_s: float = 8.0, *, name: str = "apprise"
    ) -> None:
        self.name = name
        self.timeout_s = _check_timeout(timeout_s)
        if isinstance(urls, str) or not isinstance(urls, Sequence) or not urls:
            raise ValueError("apprise urls must be a non-empty list of URLs")
        import apprise
        self._lib = apprise
        self._apprise: apprise.Apprise = apprise.Apprise()
        self._schemes: list[str] = []
        secrets: list[str] = []
        for i, url in enumerate(urls):
            if not isinstance(url, str) or not url.strip():
                raise ValueError(f"apprise url #{i + 1} must be a non-empty string")
            secrets += url_secrets(url, host_is_secret=True)
            scheme = _scheme(url)
            # Apprise URLs carry credentials, so errors name only the scheme.
            if not self._apprise.add(url):
                raise ValueError(
                    f"apprise url #{i + 1} ({scheme}://...) is not a valid Apprise URL"
                )
            self._schemes.append(scheme)
        self.secrets = tuple(secrets)
        self._redact = Redactor.of(self.secrets)

    def send(self, alert: Alert) -> None:
        body = alert.message
        details = [f"key: {alert.key}", f"kind: {alert.kind}", f"alert_id: {alert.alert_id}"]
        details += [f"{k}: {_text(v)}" for k, v in alert.context.items()]
        body = f"{body}\n\n" + "\n".join(details) if body else "\n".join(details)
        with self._apprise.notify(
            body=body,
            title=f"[{alert.severity.value.upper()}] {alert.title}",
            notify_type=self._lib.NotifyType[_APPRISE_TYPES[alert.severity]],
            body_format=self._lib.NotifyFormat.TEXT,
            timeout=self.timeout_s,
        ) as result:
            if result.status == self._lib.AppriseResultStatus.SUCCESS:
                return
            problems = [
                entry.message
                for entry in result.logs()
                if entry.level in ("WARNING", "ERROR", "CRITICAL")
            ]
            detail = self._redact("; ".join(problems[:3])) or "no detail reported"
            raise SinkError(
                f"apprise {result.status.name.lower()}: {result.failed_count} of "
                f"{len(self._schemes)} url(s) not delivered ({detail})"
            )

    def __repr__(self) -> str:
        return f"AppriseSink(schemes={self._schemes!r}, name={self.name!r})"


def _scheme(url: str) -> str:
    scheme = url.split("://", 1)[0] if "://" in url else ""
    ok = scheme[:1].isalpha() and scheme.isascii() and len(scheme) <= 20
    return scheme if ok and all(c.isalnum() or c in "+.-" for c in scheme) else "?"


def redact_url(url: str) -> str:
    """`scheme://host[:port]/...`: webhook paths and queries often hold the secret."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return f"{_scheme(url)}://?"
    rest = "/..." if parts.path not in ("", "/") or parts.query else ""
    return f"{parts.scheme}://{host}{port}{rest}"


def _check_http_url(url: object) -> str:
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"webhook url must be a non-empty string, got {url!r}")
    try:
        parts = urlsplit(url)
        has_host = bool(parts.hostname)
        parts.port  # noqa: B018 -- raises on a malformed port
    except ValueError as exc:
        # The parser quotes the part it could not read, which may hold the credential.
        problem = Redactor.of(url_secrets(url, host_is_secret=True))(str(exc))
        raise ValueError(f"webhook url {redact_url(url)!r} is malformed: {problem}") from None
    if parts.scheme not in ("http", "https") or not has_host:
        raise ValueError(
            f"webhook url {redact_url(url)!r} must be an http:// or https:// URL with a host"
        )
    return url


def _check_timeout(timeout_s: object) -> float:
    if (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, int | float)
        or not math.isfinite(timeout_s)
        or timeout_s <= 0
    ):
        raise ValueError(f"timeout_s must be a finite number of seconds above 0, got {timeout_s!r}")
    return float(timeout_s)


def _text(value: object) -> str:
    if isinstance(value, Mapping | tuple):
        return json.dumps(to_plain(value), ensure_ascii=False, separators=(",", ":"))
    return str(value)


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
