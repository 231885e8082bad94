"""No credential a sink was configured with reaches the audit store, the output or the report,
whatever form the error text that quotes it takes: the store is append-only, so a secret written
there once cannot be removed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import REPO_ROOT, RunCli

from engine.audit.store import AuditStore
from engine.monitoring.alerting.recorder import SINK_FAILURE_KIND
from engine.monitoring.redact import MASK, Redactor, url_secrets
from engine.monitoring.sink_config import SinkConfigError, load_sinks
from tests.http_recorder import HttpRecorder

HEADER_TOKEN = "hdr-7Qx2Lw9Zk4"
NEWLINE_PATH = "pth-3Vb8Nc1Rt6"
CONTROL_PATH = "ctl-5Hs2Ga9Pe3"
APPRISE_PASSWORD = "apw-8Jd4Ku7Ym2"
APPRISE_TOKEN = "apt-6Fq1Wr5Ci8"
SECRETS = (HEADER_TOKEN, NEWLINE_PATH, CONTROL_PATH, APPRISE_PASSWORD, APPRISE_TOKEN)
LOCAL_ENV = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


def test_redactor_masks_a_secret_in_every_form_it_is_quoted_in() -> None:
    secret = "Bearer s3cr3t/t0ken é\n"
    redact = Redactor.of([secret])
    quoted = [secret, repr(secret), ascii(secret), repr(secret.encode("latin-1")),
              repr(secret.encode()), json.dumps(secret), quote(secret), quote(secret, safe=""),
              repr(ValueError(f"Invalid header value {secret.encode('latin-1')!r}")),
              secret.upper(), quote(secret).lower()]
    for text in quoted:
        shown = redact(f"before {text} after")
        assert "s3cr3t" not in shown.lower() and "t0ken" not in shown, (text, shown)
        assert shown.startswith("before") and shown.endswith("after") and MASK in shown
    # A quoted piece of the secret goes too; text that shares nothing with it stays.
    assert redact("token was s3cr3t/t0 (cut)") == f"token was{MASK} (cut)"
    assert redact("connection refused by 127.0.0.1") == "connection refused by 127.0.0.1"
    assert Redactor()("anything") == "anything"


def test_url_secrets_keep_the_host_of_a_webhook_but_not_of_an_apprise_url() -> None:
    hook = url_secrets("https://hooks.example.com/services/T0/B0/xyz\n?k=v")
    assert "/services/T0/B0/xyz\n?k=v" in hook and "k=v" in hook
    assert not any("hooks.example.com" in s for s in hook)
    assert any("bot-token" in s for s in url_secrets("tgram://bot-token/chat",
                                                     host_is_secret=True))


def _sinks_file(path: Path, recorder: HttpRecorder) -> Path:
    # Each value is one the standard library refuses and quotes back in its error.
    sinks = {"sinks": [
        {"type": "webhook", "name": "header", "url": recorder.url("/hooks/ok"),
         "headers": {"Authorization": f"Bearer {HEADER_TOKEN}\n"}},
        {"type": "webhook", "name": "newline", "url": recorder.url(f"/hooks/{NEWLINE_PATH}\n")},
        {"type": "webhook", "name": "control",
         "url": recorder.url(f"/hooks/{CONTROL_PATH}\x01/x")},
        {"type": "apprise", "name": "apprise", "timeout_s": 5,
         "urls": [f"json://user:{APPRISE_PASSWORD}@127.0.0.1:{recorder.port}/{APPRISE_TOKEN}"]},
    ]}
    path.write_text(json.dumps(sinks), encoding="utf-8")  # JSON is YAML
    return path


def test_run_keeps_sink_credentials_out_of_the_store_the_output_and_the_report(
        tmp_path: Path, run_cli: RunCli) -> None:
    recorder = HttpRecorder(status=500)
    try:
        sinks = _sinks_file(tmp_path / "sinks.yaml", recorder)
        audit, report = tmp_path / "audit.db", tmp_path / "report"
        # One day: every episode must alert on its first cycle for the sinks to be tried.
        policies = tmp_path / "policies"
        shutil.copytree(REPO_ROOT / "policies", policies, ignore=shutil.ignore_patterns("tests"))
        safety = policies / "safety.yaml"
        text = safety.read_text(encoding="utf-8")
        assert "min_duration: 3\n" in text
        safety.write_text(text.replace("min_duration: 3\n", "min_duration: 1\n"),
                          encoding="utf-8")
        proc = run_cli("run", "--policies", str(policies),
                       "--facts", str(REPO_ROOT / "examples" / "history.jsonl"),
                       "--portfolio", str(REPO_ROOT / "examples" / "portfolio.yaml"),
                       "--audit", str(audit), "--sinks", str(sinks), "--report", str(report),
                       "--from", "2008-10-01", "--to", "2008-10-01", env=LOCAL_ENV)
        assert proc.returncode == 0, proc.stderr
        listed = run_cli("audit", "list", "--audit", str(audit), "--kind", SINK_FAILURE_KIND,
                         "--limit", "1000")
    finally:
        recorder.close()

    with AuditStore(audit, create=False) as store:
        failures = {r.body["sink"]: r.body["error"] for r in store.iter_records(SINK_FAILURE_KIND)}
    # Every sink failed, and its record still says why, without the secret.
    assert set(failures) == {"header", "newline", "control", "apprise"}
    assert "Invalid header value" in failures["header"] and MASK in failures["header"]
    assert "control characters" in failures["control"] and MASK in failures["control"]
    assert "HTTP 500" not in failures["header"]  # refused before it was sent

    outputs = proc.stdout + proc.stderr + listed.stdout + listed.stderr
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "sinks.yaml"]
    assert any(p.name.startswith("audit.db") for p in files)
    assert any(p.parent == report for p in files)
    for secret in SECRETS:
        assert secret not in outputs
        for file in files:
            assert secret.encode() not in file.read_bytes(), (secret, file)


def test_a_sink_config_error_does_not_quote_a_credential(tmp_path: Path) -> None:
    config = tmp_path / "sinks.yaml"
    config.write_text("sinks:\n  - type: webhook\n    url: http://127.0.0.1:9/x\n    headers:\n"
                      f'      Authorization: "Bearer {HEADER_TOKEN}"\n'
                      f'      Authorization: "Bearer {APPRISE_TOKEN}"\n', encoding="utf-8")
    with pytest.raises(SinkConfigError) as info:
        load_sinks(config)
    assert str(info.value) == f"{config}:6:7: YAML error: duplicate key 'Authorization'"

    config.write_text(f"sinks:\n  - type: webhook\n    url: https://host:{NEWLINE_PATH}/x\n",
                      encoding="utf-8")
    with pytest.raises(SinkConfigError) as info:
        load_sinks(config)
    assert "malformed" in str(info.value) and NEWLINE_PATH not in str(info.value)
