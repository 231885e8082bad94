"""`fugger run` on slices of the real history, checked from the audit store it leaves.

Two runs of the same slice go out in parallel, into audit stores of their own, both sending
alerts to a webhook served on 127.0.0.1; the tests read their stores, their output and what the
webhook received. A third run, in a copy of the policies, has its safety policy broken while
it runs.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT, replace_file, run_fugger, run_fugger_driven

from engine.audit.store import AuditStore, Record
from engine.catalogue import CATALOGUE
from engine.ids import short
from engine.monitoring.summary.build import summarize
from engine.monitoring.summary.records import LAST_ALERTS
from engine.replay import SAFETY_FACTS
from tests.http_recorder import HttpRecorder

POLICIES = REPO_ROOT / "policies"
HISTORY = REPO_ROOT / "examples" / "history.jsonl"
PORTFOLIO = REPO_ROOT / "examples" / "portfolio.yaml"
# The autumn of 2008: every rail fires, and more than LAST_ALERTS alerts are raised.
SLICE = ("2008-08-01", "2008-11-30")
# Long enough that the policy file is broken well before the end of the run.
RELOAD_SLICE = ("2008-09-01", "2009-06-30")
# Requests to 127.0.0.1 must never go through a proxy named in the environment.
LOCAL_ENV = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
# The thresholds of policies/safety.yaml.
HALT_DRIFT = 0.8
FLATTEN_VOLATILITY = 0.35


@dataclass(frozen=True)
class Run:
    audit: Path
    report_dir: Path
    proc: subprocess.CompletedProcess[str]

    @property
    def run_id(self) -> str:
        with AuditStore(self.audit, create=False) as store:
            started = store.latest("run_started")
            assert started is not None
            return started.ref


@dataclass(frozen=True)
class Pair:
    text: Run
    json: Run
    webhook: list[dict[str, Any]]


def run_args(audit: Path, sinks: Path, *extra: str, policies: Path = POLICIES) -> list[str]:
    return ["run", "--policies", str(policies), "--facts", str(HISTORY),
            "--portfolio", str(PORTFOLIO), "--audit", str(audit), "--sinks", str(sinks),
            "--from", SLICE[0], "--to", SLICE[1], *extra]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("replay")
    hook = HttpRecorder()
    try:
        sinks = root / "sinks.yaml"
        url = hook.url("/hooks/fugger")
        sinks.write_text(f"sinks:\n  - type: webhook\n    url: {url}\n    timeout_s: 5\n",
                         encoding="utf-8")
        # Without hysteresis, so the slice raises more alerts than `fugger alerts` shows.
        policies = root / "policies"
        shutil.copytree(POLICIES, policies, ignore=shutil.ignore_patterns("tests"))
        safety = policies / "safety.yaml"
        text = safety.read_text(encoding="utf-8")
        safety.write_text(re.sub(r"min_duration: \d+\n    clear_after: \d+",
                                 "min_duration: 1\n    clear_after: 1", text), encoding="utf-8")
        assert "min_duration: 1\n" in safety.read_text(encoding="utf-8")
        a, b = root / "a", root / "b"
        commands = [run_args(a / "audit.db", sinks, "--report", str(a / "report"),
                             policies=policies),
                    run_args(b / "audit.db", sinks, "--format", "json", policies=policies)]
        with ThreadPoolExecutor(max_workers=2) as pool:
            procs = list(pool.map(lambda args: run_fugger(args, env=LOCAL_ENV), commands))
        for p in procs:
            assert p.returncode == 0, p.stderr
        yield Pair(Run(a / "audit.db", a / "report", procs[0]),
                   Run(b / "audit.db", b / "report", procs[1]), hook.received_json())
    finally:
        hook.close()


def records(audit: Path, kind: str) -> list[Record]:
    with AuditStore(audit, create=False) as store:
        return list(store.iter_records(kind))


def valid(name: str, value: object) -> bool:
    """Whether `value` is a usable value of safety fact `name`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and CATALOGUE[name].in_range(float(value))


def expected_action(facts: Mapping[str, object]) -> str | None:
    """halt or flatten as the safety policy decides them from the day's facts; None for the
    milder actions, which these tests do not pin down."""
    if not all(valid(k, facts.get(k)) for k in SAFETY_FACTS):
        return "halt"
    drift, vol = facts["drift_score"], facts["volatility"]
    assert isinstance(drift, float | int) and isinstance(vol, float | int)
    if drift >= HALT_DRIFT:
        return "halt"
    if vol >= FLATTEN_VOLATILITY:
        return "flatten"
    return None


# --- the rails, day by day --------------------------------------------------------------------


def test_flatten_and_halt_days_are_exactly_those_the_facts_call_for(pair: Pair) -> None:
    cycles = [r.body for r in records(pair.text.audit, "cycle")]
    assert len(cycles) == len({c["ts"] for c in cycles}) > 60
    flatten: set[tuple[str, str]] = set()
    halt: set[tuple[str, str]] = set()
    want_flatten: set[tuple[str, str]] = set()
    want_halt: set[tuple[str, str]] = set()
    for c in cycles:
        assert set(c["actions"]) == set(c["facts"]) == {"NASDAQ", "SP500", "WTI"}
        for sym, action in c["actions"].items():
            day = (c["ts"], sym)
            if action == "flatten":
                flatten.add(day)
                assert c["deciding"][sym] == "high-volatility-flatten", day
            if action == "halt":
                halt.add(day)
            want = expected_action(c["facts"][sym])
            if want == "flatten":
                want_flatten.add(day)
            if want == "halt":
                want_halt.add(day)
            if c["facts"][sym]["drift_score"] >= HALT_DRIFT:
                assert c["deciding"][sym] == "drift-spike-halt", day
    assert flatten and halt, "the slice is meant to flatten and to halt"
    assert flatten == want_flatten
    assert halt == want_halt


def test_no_order_the_rails_forbid_is_filled(pair: Pair) -> None:
    """Under halt nothing goes out; under flatten and block_new no buy does. Such orders are
    denied by the rule that decided the day, and the slice has some."""
    forbidden = 0
    for r in records(pair.text.audit, "cycle"):
        c = r.body
        for line in c["order_lines"]:
            sym = line["symbol"]
            action = c["actions"][sym]
            if action == "halt" or (action in ("flatten", "block_new") and line["side"] == "BUY"):
                forbidden += 1
                assert line["status"] == "denied", (c["ts"], line)
                assert line["rule"] == c["deciding"][sym], (c["ts"], line)
    assert forbidden > 0


# --- the summary, from the run and from the store ---------------------------------------------


def printed_summary(stdout: str) -> str:
    """What `fugger run` printed before its closing lines (timing, store, report path)."""
    lines = stdout.splitlines(keepends=True)
    end = next(i for i, ln in enumerate(lines) if ln.startswith("replayed in "))
    return "".join(lines[:end])


def test_report_text_is_the_stores_summary(pair: Pair) -> None:
    proc = run_fugger(["report", "--audit", str(pair.text.audit)])
    assert proc.returncode == 0, proc.stderr
    with AuditStore(pair.text.audit, create=False) as store:
        assert proc.stdout == summarize(store).render_text()
    by_id = run_fugger(["report", "--audit", str(pair.text.audit), "--run", pair.text.run_id])
    assert by_id.stdout == proc.stdout


def test_report_prints_exactly_what_the_run_printed(pair: Pair) -> None:
    proc = run_fugger(["report", "--audit", str(pair.text.audit)])
    assert proc.returncode == 0, proc.stderr
    assert printed_summary(pair.text.proc.stdout) == proc.stdout


def test_report_json_is_summarize_to_json(pair: Pair) -> None:
    proc = run_fugger(["report", "--audit", str(pair.json.audit), "--format", "json"])
    assert proc.returncode == 0, proc.stderr
    reported = json.loads(proc.stdout)
    with AuditStore(pair.json.audit, create=False) as store:
        expected = json.loads(json.dumps(summarize(store, pair.json.run_id).to_json()))
    assert reported == expected
    assert json.loads(pair.json.proc.stdout) == expected
    assert reported["run_id"] == pair.json.run_id
    assert reported["days"] == len(records(pair.json.audit, "cycle"))


# --- determinism ------------------------------------------------------------------------------


def day_by_day(audit: Path) -> list[dict[str, Any]]:
    """What each day decided and did, without ids or wall-clock times."""
    out = []
    for r in records(audit, "cycle"):
        c = r.body
        out.append({
            "ts": c["ts"], "actions": c["actions"], "deciding": c["deciding"],
            "fired": c["fired"], "trading_state": c["trading_state"],
            "rebalance": c["rebalance"], "orders": c["orders"], "equity": c["equity"],
            "cash": c["cash"], "positions": c["positions"],
            "order_lines": [(o["symbol"], o["side"], o["shares"], o["status"], o["rule"])
                            for o in c["order_lines"]],
        })
    return out


def order_history(audit: Path) -> list[tuple[Any, ...]]:
    return [(r.body["ts"], r.body["symbol"], r.body["side"], r.body["shares"],
             r.body["status"], r.body.get("rule")) for r in records(audit, "order")]


def decision_history(audit: Path) -> list[tuple[Any, ...]]:
    out = []
    for r in records(audit, "decision"):
        d = r.body["decision"]
        out.append((d["ts"], d["symbol"], d["action"],
                    (d["deciding_rule"] or {}).get("rule"), d["facts_hash"],
                    d["policy_set"]["hash"]))
    return out


def test_two_runs_decide_and_order_the_same(pair: Pair) -> None:
    a, b = pair.text.audit, pair.json.audit
    assert pair.text.run_id != pair.json.run_id
    assert day_by_day(a) == day_by_day(b)
    orders = order_history(a)
    assert orders, "the slice is meant to send orders"
    assert orders == order_history(b)
    assert decision_history(a) == decision_history(b)
    alerts_a = [(r.body["ts"], r.body["key"], r.body["title"]) for r in records(a, "alert")]
    alerts_b = [(r.body["ts"], r.body["key"], r.body["title"]) for r in records(b, "alert")]
    assert alerts_a == alerts_b


# --- alerts -----------------------------------------------------------------------------------


def delivered(body: Mapping[str, Any]) -> tuple[str, str]:
    """(alert id, title) of a Slack-style webhook body; the footer ends with the alert id."""
    attachment = body["attachments"][0]
    alert_id = attachment["footer"].rsplit(" | ", 1)[-1]
    return alert_id, attachment["title"]


def test_every_persisted_alert_reached_the_webhook(pair: Pair) -> None:
    stored = [(r.body["alert_id"], r.body["title"])
              for run in (pair.text, pair.json) for r in records(run.audit, "alert")]
    assert len(stored) > 2 * LAST_ALERTS
    got = [delivered(b) for b in pair.webhook]
    assert sorted(got) == sorted(stored)
    for run in (pair.text, pair.json):
        assert records(run.audit, "alert_sink_failure") == []


def alert_ids_shown(stdout: str) -> list[str]:
    return re.findall(r"alert (\S+)\]$", stdout, flags=re.MULTILINE)


def test_alerts_shows_the_last_twenty_by_default(pair: Pair) -> None:
    audit = pair.text.audit
    ids = [r.body["alert_id"] for r in records(audit, "alert")]
    assert len(ids) > LAST_ALERTS == 20
    default = run_fugger(["alerts", "--audit", str(audit)])
    every = run_fugger(["alerts", "--audit", str(audit), "--all"])
    assert default.returncode == every.returncode == 0
    assert len(default.stdout.splitlines()) == LAST_ALERTS
    assert alert_ids_shown(default.stdout) == [short(i) for i in ids[-LAST_ALERTS:]]
    assert alert_ids_shown(every.stdout) == [short(i) for i in ids]


# --- the HTML report --------------------------------------------------------------------------


def test_run_with_report_writes_one_self_contained_html_file(pair: Pair) -> None:
    folder = pair.text.report_dir
    assert sorted(p.name for p in folder.iterdir()) == ["report.html"]
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert html.count('class="plotly-graph-div"') == 4 + 3
    assert not re.search(r'<(?:script|link|img)[^>]+(?:src|href)="', html)
    assert 'data-figure="book.sharpe"' in html
    assert pair.text.run_id in html
    assert f"report: {folder / 'report.html'}" in pair.text.proc.stdout
    assert not pair.json.report_dir.exists()


# --- hot reload -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reload:
    audit: Path
    safety: Path
    proc_code: int
    stderr: str


def policy_alerts(audit: Path) -> list[dict[str, Any]]:
    return [r.body for r in records(audit, "alert") if r.body.get("kind") == "policy"]


@pytest.fixture(scope="module")
def reload_run(tmp_path_factory: pytest.TempPathFactory) -> Reload:
    root = tmp_path_factory.mktemp("reload")
    policies = root / "policies"
    shutil.copytree(POLICIES, policies, ignore=shutil.ignore_patterns("tests"))
    safety = policies / "safety.yaml"
    good = safety.read_text(encoding="utf-8")
    assert good.count("value: 0.35") == 1
    broken = good.replace("value: 0.35", "value: 35")
    audit = root / "audit.db"
    args = ["run", "--policies", str(policies), "--facts", str(HISTORY),
            "--portfolio", str(PORTFOLIO), "--audit", str(audit),
            "--from", RELOAD_SLICE[0], "--to", RELOAD_SLICE[1]]
    # The first progress line comes after the first day: from then on the run is deciding.
    done = run_fugger_driven(args, [("day 1/", lambda: replace_file(safety, broken))],
                             env=LOCAL_ENV)
    assert done.steps_taken == 1, done.stderr
    return Reload(audit, safety, done.returncode, done.stderr)


def test_broken_policy_mid_run_keeps_the_last_good_set(reload_run: Reload) -> None:
    assert reload_run.proc_code == 0, reload_run.stderr
    with AuditStore(reload_run.audit, create=False) as store:
        started = store.latest("run_started")
        assert started is not None
        good_hash = started.body["policy_hash"]
        alerts = policy_alerts(reload_run.audit)
        assert len(alerts) == 1, alerts
        alert = alerts[0]
        assert alert["severity"] == "critical"
        assert alert["title"] == "Policy set failed to load"
        assert str(reload_run.safety) in alert["message"]
        assert "35" in alert["message"]
        broke_at = alert["ts"]

        # No other set was ever put in force.
        assert [r.ref for r in store.iter_records("policy_activation")] == [good_hash]
        decisions = [r.body["decision"] for r in store.iter_records("decision")]
        assert {d["policy_set"]["hash"] for d in decisions} == {good_hash}
        cycles = [r.body for r in store.iter_records("cycle")]
        finished = store.latest("run_finished")
        assert finished is not None
        assert finished.body["days"] == len(cycles)

    after = [c for c in cycles if c["ts"] >= broke_at]
    assert len(after) > len(cycles) // 2, "the file was meant to break early in the run"
    flattened = 0
    for c in after:
        for sym, action in c["actions"].items():
            if expected_action(c["facts"][sym]) == "flatten":
                assert action == "flatten", (c["ts"], sym, c["facts"][sym])
                flattened += 1
    assert flattened > 0, "the days after the break are meant to include flatten days"
    assert "policy change rejected" in reload_run.stderr
    # The progress lines end on the last day of the slice: the run went to the end.
    assert re.search(r"^day (\d+)/\1: 2009-06-30$", reload_run.stderr, flags=re.MULTILINE)


def test_policy_load_alert_counts_the_problems(reload_run: Reload) -> None:
    """One bad value is one problem: the alert's count and its message agree with the
    rejection it reports."""
    (alert,) = policy_alerts(reload_run.audit)
    assert alert["context"]["problem_count"] == 1, alert["message"]
    assert alert["message"].startswith("1 problem(s); the policy set was not applied: "
                                       f"{reload_run.safety}:"), alert["message"]
