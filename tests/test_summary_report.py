"""Run summaries and the HTML report, from synthetic runs written into a real audit store."""

from __future__ import annotations

import html
import itertools
import json
import math
import re
import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser import chromium
from conftest import RunCli

from engine.audit.store import AuditStore
from engine.ids import short
from engine.monitoring.alerting.engine import AlertEngine
from engine.monitoring.dispatch.records import SinkFailure
from engine.monitoring.report import write_report
from engine.monitoring.summary.build import summarize
from engine.monitoring.summary.model import RunSummary
from engine.monitoring.summary.records import SummaryError
from engine.policy.model import AlertSettings
from tests.conftest import REPO_ROOT

RUN_A = "run-a"
RUN_B = "run-b"
SQRT_252 = math.sqrt(252)

#: ts, equity, buy & hold, actions, fired, deciding, trading state, rebalance
DAYS: list[tuple[str, float, float, dict[str, str], dict[str, list[str]], dict[str, str | None],
                 str, dict[str, Any]]] = [
    ("2007-12-31T21:00:00Z", 100.0, 100.0, {"SP500": "allow", "WTI": "allow"}, {},
     {"SP500": None, "WTI": None}, "ACTIVE",
     {"triggered": True, "rule": "initial-build", "executed": True}),
    ("2008-01-02T21:00:00Z", 120.0, 101.0, {"SP500": "allow", "WTI": "block_new"},
     {"WTI": ["coherence-break-block"]}, {"SP500": None, "WTI": "coherence-break-block"},
     "REDUCING", {"triggered": False, "rule": None}),
    ("2008-06-02T21:00:00Z", 90.0, 102.0, {"SP500": "halt", "WTI": "flatten"},
     {"SP500": ["drift-spike-halt", "high-volatility-flatten"],
      "WTI": ["high-volatility-flatten"]},
     {"SP500": "drift-spike-halt", "WTI": "high-volatility-flatten"}, "HALTED",
     {"triggered": False, "rule": None}),
    ("2008-12-31T21:00:00Z", 130.0, 103.0, {"SP500": "wait_confirmation", "WTI": "allow"},
     {"SP500": ["low-confidence-wait"]}, {"SP500": "low-confidence-wait", "WTI": None},
     "HALTED", {"triggered": True, "rule": "weight-drift", "executed": False}),
    ("2011-03-01T21:00:00Z", 104.0, 104.0, {"SP500": "allow", "WTI": "allow"}, {},
     {"SP500": None, "WTI": None}, "ACTIVE",
     {"triggered": True, "rule": "weight-drift", "executed": True}),
]

FACTS = {"drift_score": 0.1, "volatility": 0.2, "coherence": 0.8, "frs": 0.7,
         "meta_reliability": 0.9}


def cycle(run_id: str, ts: str, equity: float, buy_hold: float, actions: dict[str, str],
          fired: dict[str, list[str]] | None = None,
          deciding: dict[str, str | None] | None = None, state: str = "ACTIVE",
          rebalance: dict[str, Any] | None = None) -> tuple[str, str, dict[str, Any]]:
    prices = {s: 100.0 + i for i, s in enumerate(sorted(actions))}
    return ("cycle", f"{run_id}:{ts}", {
        "run_id": run_id, "ts": ts, "equity": equity, "cash": 10.0,
        "positions": {s: 1.0 for s in actions}, "prices": prices, "buy_hold_equity": buy_hold,
        "actions": actions, "deciding": deciding or {s: None for s in actions},
        "fired": fired or {}, "facts": {s: dict(FACTS) for s in actions},
        "trading_state": state, "rebalance": rebalance or {"triggered": False, "rule": None},
        "orders": {"sent": 0, "denied": 0, "held": 0, "pending": 0, "expired": 0, "filled": 0},
    })


def started(run_id: str, symbols: list[str]) -> tuple[str, str, dict[str, Any]]:
    return ("run_started", run_id, {
        "run_id": run_id, "started_at": "2025-02-03T04:05:06Z",
        "policies": {"core-safety": "2.0.0", "core-approval": "1.1.0"}, "policy_hash": "f" * 64,
        "facts_file": "examples/history.jsonl", "portfolio_file": "examples/portfolio.yaml",
        "approval_rule": "buys above 20% of equity wait for a person; unanswered after 1 day "
                         "they expire",
        "resume_rule": "a halt lifts after 5 clear days, resumed by replay-operator",
        "symbols": symbols, "initial_cash": 100.0})


def order(run_id: str, client_id: str, status: str, side: str = "buy",
          ts: str = "2008-01-02T21:00:00Z") -> tuple[str, str, dict[str, Any]]:
    return ("order", client_id, {
        "run_id": run_id, "ts": ts, "client_id": client_id, "symbol": "SP500", "side": side,
        "shares": 1.0, "price": 100.0, "status": status, "rule": None, "decision_id": "d",
        "action": "allow", "deciding_rule": None, "facts_hash": "h", "summary": status})


def write_runs(store: AuditStore) -> list[str]:
    """Run B (older, unfinished) and run A (the latest); the ids of run A's alerts in order."""
    store.append_many([
        started(RUN_B, ["SP500"]),
        cycle(RUN_B, "2010-01-04T21:00:00Z", 50.0, 50.0, {"SP500": "allow"}),
        cycle(RUN_B, "2010-01-05T21:00:00Z", 55.0, 51.0, {"SP500": "halt"}),
        order(RUN_B, "b-1", "filled"),
    ])
    with AlertEngine(store, None, RUN_B) as engine:
        engine.on_approval_waiting("2010-01-05T21:00:00Z", "b-item", timedelta(days=2))

    store.append(*started(RUN_A, ["SP500", "WTI"]))
    first = DAYS[2]
    # Day 3 is recorded twice (a resumed run); the later record must win.
    store.append(*cycle(RUN_A, first[0], 5000.0, 102.0, {"SP500": "allow", "WTI": "allow"}))
    store.append_many([cycle(RUN_A, *d) for d in DAYS])
    store.append_many([
        order(RUN_A, "a-1", "submitting"), order(RUN_A, "a-1", "filled"),
        order(RUN_A, "a-2", "pending_approval"), order(RUN_A, "a-2", "expired"),
        order(RUN_A, "a-3", "denied"),
        order(RUN_A, "a-4", "pending_approval"), order(RUN_A, "a-4", "approved"),
        order(RUN_A, "a-4", "submitting"), order(RUN_A, "a-4", "filled", side="sell"),
        order(RUN_A, "a-5", "submitting"), order(RUN_A, "a-5", "failed"),
    ])
    ids: list[str] = []
    with AlertEngine(store, None, RUN_A, settings=AlertSettings(1, 1)) as engine:
        start = datetime(2008, 1, 1, 21, tzinfo=UTC)
        for n in range(24):
            action = "halt" if n % 2 == 0 else "allow"
            ids += [a.alert_id for a in
                    engine.on_safety(start + timedelta(days=n), "SP500", action, "r")]
        ids += [a.alert_id for a in engine.on_approval_waiting(
            "2008-02-01T21:00:00Z", "a-item", timedelta(days=1))]
        engine.on_sink_failure(SinkFailure("webhook", ids[0], "HTTP 500",
                                           "2025-02-03T04:05:07.000Z"))
    store.append("run_finished", RUN_A, {"run_id": RUN_A, "finished_at": "2025-02-03T04:06:00Z",
                                         "days": 5})
    return ids


@pytest.fixture
def alert_ids(store: AuditStore) -> list[str]:
    return write_runs(store)


# -- summary ------------------------------------------------------------------------------------


def test_summary_counts_actions_rules_rebalances_and_states(
    store: AuditStore, alert_ids: list[str]
) -> None:
    s = summarize(store)
    assert s.run_id == RUN_A
    assert s.days == 5
    assert (s.first_day, s.last_day) == (DAYS[0][0], DAYS[-1][0])
    assert s.finished_at == "2025-02-03T04:06:00Z"
    assert dict(s.symbol_days_by_action) == {
        "halt": 1, "flatten": 1, "block_new": 1, "wait_confirmation": 1, "allow": 6}
    assert dict(s.book_days_by_action) == {
        "halt": 1, "flatten": 0, "block_new": 1, "wait_confirmation": 1, "allow": 2}
    assert dict(s.days_by_trading_state) == {"ACTIVE": 2, "REDUCING": 1, "HALTED": 2}
    assert s.rules_fired == (("high-volatility-flatten", 2), ("coherence-break-block", 1),
                             ("drift-spike-halt", 1), ("low-confidence-wait", 1))
    assert dict(s.rules_deciding) == {"coherence-break-block": 1, "drift-spike-halt": 1,
                                      "high-volatility-flatten": 1, "low-confidence-wait": 1}
    assert s.rebalances == 3
    assert dict(s.rebalances_by_rule) == {"weight-drift": 2, "initial-build": 1}
    assert s.rebalances_executed == 2
    assert s.approval_rule is not None and "expire" in s.approval_rule
    assert s.resume_rule == "a halt lifts after 5 clear days, resumed by replay-operator"
    assert s.policies == (("core-approval", "1.1.0"), ("core-safety", "2.0.0"))


def test_summary_returns_volatility_and_drawdown_are_exact(
    store: AuditStore, alert_ids: list[str]
) -> None:
    s = summarize(store)
    book = [d[1] for d in DAYS]
    bh = [d[2] for d in DAYS]
    assert (s.book.start, s.book.end) == (100.0, 104.0)
    assert s.book.total_return == pytest.approx(0.04, abs=1e-12)
    returns = [b / a - 1 for a, b in itertools.pairwise(book)]
    assert returns == pytest.approx([0.2, -0.25, 4 / 9, -0.2])
    assert s.book.annualised_volatility == pytest.approx(statistics.stdev(returns) * SQRT_252,
                                                         rel=1e-12)
    assert s.book.max_drawdown == pytest.approx(0.25, abs=1e-12)  # 120 -> 90
    bh_returns = [b / a - 1 for a, b in itertools.pairwise(bh)]
    assert s.buy_hold.total_return == pytest.approx(0.04, abs=1e-12)
    assert s.buy_hold.annualised_volatility == pytest.approx(
        statistics.stdev(bh_returns) * SQRT_252, rel=1e-12)
    assert s.buy_hold.max_drawdown == 0.0


def test_summary_by_year_covers_the_notable_years(store: AuditStore, alert_ids: list[str]) -> None:
    years = {y.year: y for y in summarize(store).years}
    assert sorted(years) == [2007, 2008, 2011]
    y2008 = years[2008]
    assert y2008.days == 3
    assert dict(y2008.symbol_days) == {
        "halt": 1, "flatten": 1, "block_new": 1, "wait_confirmation": 1, "allow": 2}
    assert dict(y2008.book_days) == {
        "halt": 1, "flatten": 0, "block_new": 1, "wait_confirmation": 1, "allow": 0}
    assert y2008.book_return == pytest.approx(0.3)  # 100 at the end of 2007, 130 at the end
    assert y2008.buy_hold_return == pytest.approx(0.03)
    assert years[2011].book_return == pytest.approx(104 / 130 - 1)
    assert years[2007].book_return == 0.0
    notable = [y["year"] for y in summarize(store).to_json()["notable_years"]]
    assert notable == [2008, 2011]


def test_summary_counts_orders_by_status(store: AuditStore, alert_ids: list[str]) -> None:
    s = summarize(store)
    assert s.orders == 5
    assert dict(s.orders_by_status) == {
        "sent": 3, "filled": 2, "denied": 1, "pending_approval": 2, "approved": 1,
        "rejected": 0, "expired": 1, "cancelled": 0, "failed": 1, "submitting": 3}
    final = {k: v for k, v in s.orders_final_status if v}
    assert final == {"filled": 2, "denied": 1, "expired": 1, "failed": 1}


def test_summary_alerts_by_severity_and_the_last_twenty(
    store: AuditStore, alert_ids: list[str]
) -> None:
    s = summarize(store)
    assert s.alerts == 25
    assert dict(s.alerts_by_severity) == {"critical": 12, "warning": 1, "info": 12}
    assert [a.alert_id for a in s.last_alerts] == alert_ids[-20:]
    assert s.sink_failures == 1


def test_summary_of_a_named_run_and_errors(store: AuditStore, alert_ids: list[str]) -> None:
    b = summarize(store, RUN_B)
    assert (b.run_id, b.days, b.orders, b.alerts) == (RUN_B, 2, 1, 1)
    assert b.finished_at is None
    assert "finished not recorded" in b.render_text()
    with pytest.raises(SummaryError, match=r"no run 'nope'.*run-b, run-a"):
        summarize(store, "nope")


def test_summary_is_deterministic(store: AuditStore, alert_ids: list[str]) -> None:
    first, second = summarize(store), summarize(store)
    assert first == second
    assert first.render_text() == second.render_text()
    assert json.dumps(first.to_json()) == json.dumps(second.to_json())
    text = first.render_text()
    for needle in ("Run run-a", "+4.00%", "25.00%", "2008*", "held (pending_approval)",
                   "weight-drift 2", "critical 12"):
        assert needle in text


def test_an_empty_store_or_a_bad_record_is_a_clear_error(store: AuditStore) -> None:
    with pytest.raises(SummaryError, match="no run recorded"):
        summarize(store)
    store.append(*started(RUN_A, ["SP500"]))
    bad = cycle(RUN_A, "2008-01-02T21:00:00Z", 100.0, 100.0, {"SP500": "stop"})
    record = store.append(*bad)
    with pytest.raises(SummaryError, match=rf"record {record.seq} .*actions.SP500 is 'stop'"):
        summarize(store)


def test_a_non_finite_equity_is_refused(store: AuditStore) -> None:
    store.append(*started(RUN_A, ["SP500"]))
    store.append(*cycle(RUN_A, "2008-01-02T21:00:00Z", math.nan, 100.0, {"SP500": "allow"}))
    with pytest.raises(SummaryError, match="equity must be a finite number"):
        summarize(store)


# -- CLI ----------------------------------------------------------------------------------------


def test_fugger_report_prints_the_summary(
    run_cli: RunCli, db: Path, store: AuditStore, alert_ids: list[str], tmp_path: Path
) -> None:
    proc = run_cli("report", "--audit", str(db))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == summarize(store).render_text()

    out = tmp_path / "out"
    proc = run_cli("report", "--audit", str(db), "--run", RUN_B, "--format", "json",
                   "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == summarize(store, RUN_B).to_json()
    assert [p.name for p in out.iterdir()] == ["report.html"]
    assert str(out / "report.html") in proc.stderr


def test_fugger_report_errors(run_cli: RunCli, db: Path, store: AuditStore,
                              alert_ids: list[str], tmp_path: Path) -> None:
    missing = run_cli("report", "--audit", str(tmp_path / "none.db"))
    assert missing.returncode == 1 and "no audit store" in missing.stderr
    unknown = run_cli("report", "--audit", str(db), "--run", "nope")
    assert unknown.returncode == 1 and "no run 'nope'" in unknown.stderr


def test_fugger_alerts_lists_the_last_twenty_or_all(
    run_cli: RunCli, db: Path, store: AuditStore, alert_ids: list[str]
) -> None:
    proc = run_cli("alerts", "--audit", str(db))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 20
    assert [re.search(r"alert (\w+)\]$", line).group(1) for line in lines  # type: ignore[union-attr]
            ] == [short(a) for a in alert_ids[-20:]]

    proc = run_cli("alerts", "--audit", str(db), "--all", "--run", RUN_A, "--severity",
                   "warning", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(r["run_id"], r["severity"]) for r in rows] == (
        [(RUN_A, "critical")] * 12 + [(RUN_A, "warning")])
    assert [r["alert_id"] for r in rows][-1] == alert_ids[-1]

    bad = run_cli("alerts", "--audit", str(db), "--severity", "loud")
    assert bad.returncode == 2


# -- HTML report --------------------------------------------------------------------------------


def figure(page: str, name: str) -> str:
    """The text of the table cell named `name` (data-figure) in the report."""
    found = re.findall(rf'data-figure="{re.escape(name)}">([^<]*)<', page)
    assert len(found) == 1, name
    return html.unescape(found[0])


def table_rows(page: str, table_id: str) -> list[list[str]]:
    body = re.search(rf'<table id="{table_id}">(.*?)</table>', page, re.S)
    assert body is not None, table_id
    return [[html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", body.group(1))][1:]


def test_the_report_is_one_self_contained_file(
    store: AuditStore, alert_ids: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "report"
    path = write_report(store, out)
    assert path == out / "report.html"
    assert [p.name for p in out.iterdir()] == ["report.html"]
    page = path.read_text(encoding="utf-8")
    # plotly.js inline and once; nothing fetched from anywhere.
    assert page.count("<script type=\"text/javascript\">/**") == 1
    assert not re.search(r'<(?:script|link|img)[^>]+(?:src|href)="(?!data:)', page)
    assert page.count('class="plotly-graph-div"') == 4 + 2  # four charts, one per symbol
    summary: RunSummary = summarize(store)
    assert html.escape(summary.render_text()) in page
    assert html.escape(summary.approval_rule or "?") in page
    assert '<tr class="notable"><td>2008</td>' in page
    # Critical alerts first, in full; the others counted by kind.
    assert [r[2] for r in table_rows(page, "critical-alerts")] == ["SP500: halt started"] * 12
    assert table_rows(page, "alert-counts") == [["approval", "warning", "1"],
                                                ["safety", "info", "12"]]
    for heading in ("Five worst drawdowns", "What each rule cost or saved", "Halts",
                    "Assumptions", "split equally"):
        assert heading in page


def test_the_report_renders_in_a_browser_with_no_network(
    store: AuditStore, alert_ids: list[str], tmp_path: Path
) -> None:
    """Opened from disk in headless Chromium with every request but the file refused: the
    charts draw, no script fails, nothing is fetched, and the figures are on screen."""
    path = write_report(store, tmp_path / "report")
    fetched: list[str] = []
    errors: list[str] = []
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(
            "file://") else (fetched.append(route.request.url), route.abort()))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(path.as_uri())
        page.wait_for_selector(".plotly-graph-div .main-svg")
        drawn = page.locator(".plotly-graph-div").evaluate_all(
            "divs => divs.filter(d => d.querySelector('.main-svg')).length")
        shown = page.locator('[data-figure="book.cagr"]').inner_text()
    assert (fetched, errors) == ([], [])
    assert drawn == 4 + 2
    assert shown == figure(path.read_text(encoding="utf-8"), "book.cagr")


def test_the_report_counts_denied_orders_by_rule(store: AuditStore, tmp_path: Path) -> None:
    write_runs(store)
    denied = [order(RUN_A, f"x-{i}", "denied") for i in range(3)]
    for (_, _, body), rule in zip(denied, ["price-collar", "daily-loss-halt", "price-collar"],
                                  strict=True):
        body["rule"] = rule
    store.append_many(denied)
    page = write_report(store, tmp_path / "r").read_text(encoding="utf-8")
    rows = dict((r[0], r[1]) for r in table_rows(page, "denials"))
    assert rows["price-collar"] == "2" and rows["daily-loss-halt"] == "1"


def test_the_report_figures_match_their_formulas(store: AuditStore, tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    store.append(*started(RUN_A, ["SP500"]))
    start = datetime(2001, 1, 2, 21, tzinfo=UTC)
    book, hold = [100_000.0], [100_000.0]
    for _ in range(799):
        book.append(book[-1] * (1 + rng.normal(0.0003, 0.008)))
        hold.append(hold[-1] * (1 + rng.normal(0.0004, 0.015)))
    records = []
    for n, (b, h) in enumerate(zip(book, hold, strict=True)):
        ts = (start + timedelta(days=n)).isoformat().replace("+00:00", "Z")
        action = "block_new" if n % 50 == 0 else "allow"
        records.append(cycle(RUN_A, ts, round(b, 2), round(h, 2), {"SP500": action},
                             deciding={"SP500": "coherence-break-block"
                                       if action != "allow" else None}))
    store.append_many(records)
    store.append_many([
        ("order", "f-1", {"run_id": RUN_A, "ts": records[3][2]["ts"], "client_id": "f-1",
                          "symbol": "SP500", "side": "buy", "shares": 10.0, "price": 100.0,
                          "fill_price": 100.05, "commission": 1.5, "status": "filled"}),
        ("trading_state", "book", {"run_id": RUN_A, "state": "HALTED",
                                   "rule": "drift-spike-halt", "since": records[5][2]["ts"],
                                   "previous": "ACTIVE"}),
        ("trading_state", "book", {"run_id": RUN_A, "state": "ACTIVE", "rule": None,
                                   "since": records[12][2]["ts"], "previous": "HALTED",
                                   "by": "replay-operator"}),
    ])
    page = write_report(store, tmp_path / "r").read_text(encoding="utf-8")

    equity = np.array([round(b, 2) for b in book])
    r = equity[1:] / equity[:-1] - 1
    years = r.size / 252
    assert figure(page, "book.cagr") == f"{(equity[-1] / equity[0]) ** (1 / years) - 1:.2%}"
    assert figure(page, "book.volatility") == f"{r.std(ddof=1) * math.sqrt(252):.2%}"
    assert figure(page, "book.sharpe") == f"{r.mean() / r.std(ddof=1) * math.sqrt(252):.2f}"
    peaks = np.maximum.accumulate(equity)
    assert figure(page, "book.max_drawdown") == f"{(equity / peaks - 1).min():.2%}"
    assert figure(page, "book.var_95") == f"{np.percentile(r, 5):.2%}"
    held = np.array([round(h, 2) for h in hold])
    rh = held[1:] / held[:-1] - 1
    beta = np.cov(r, rh, ddof=1)[0, 1] / rh.var(ddof=1)
    assert figure(page, "book.beta") == f"{beta:.2f}"
    assert figure(page, "buy_hold.beta") == "1.00"
    assert figure(page, "costs.commission") == "1.50"
    assert figure(page, "costs.slippage") == "0.50"
    worst = table_rows(page, "drawdowns")
    assert len(worst) == 5 and worst[0][0] == f"{1 - (equity / peaks).min():.2%}"
    assert table_rows(page, "halts") == [[records[5][2]["ts"], "drift-spike-halt",
                                          records[12][2]["ts"], "replay-operator", "7"]]
    [effect] = table_rows(page, "rule-effects")
    after = [n + 1 for n in range(0, 799, 50)]
    expected = np.prod(1 + r[[a - 1 for a in after]]) - 1
    assert effect[:3] == ["coherence-break-block", str(len(after)), f"{expected:+.2%}"]


def test_a_long_run_renders(store: AuditStore, tmp_path: Path) -> None:
    symbols = ["NASDAQ", "SP500", "WTI"]
    store.append(*started(RUN_A, symbols))
    rng = np.random.default_rng(7)
    start = datetime(1999, 11, 12, 21, tzinfo=UTC)
    choices = ["allow", "allow", "wait_confirmation", "block_new", "flatten", "halt"]
    records = []
    equity = 100_000.0
    for n in range(5000):
        ts = (start + timedelta(days=n)).isoformat().replace("+00:00", "Z")
        equity *= 1 + rng.normal(0, 0.01)
        actions = {s: choices[int(rng.integers(0, len(choices)))] for s in symbols}
        records.append(cycle(RUN_A, ts, equity, equity * 1.01, actions))
        if n % 97 == 0:
            records.append(order(RUN_A, f"o-{n}", "filled", side="sell" if n % 2 else "buy",
                                 ts=ts))
    store.append_many(records)
    path = write_report(store, tmp_path / "big")
    page = path.read_text(encoding="utf-8")
    assert page.count('class="plotly-graph-div"') == 4 + 3
    assert "5000 (1999-11-12 .. 2013-07-20)" in page
    assert path.stat().st_size < 12_000_000


def test_report_draws_the_thresholds_of_the_recorded_policy(tmp_path: Path) -> None:
    from engine.monitoring.report import DEFAULT_THRESHOLDS, recorded_thresholds
    from engine.policy.loader import policy_set_from_texts

    text = (REPO_ROOT / "policies" / "safety.yaml").read_text(encoding="utf-8")
    changed = text.replace("value: 0.35}", "value: 0.3}").replace("2.1.0", "2.2.0")
    policy_set = policy_set_from_texts([("policies/safety.yaml", changed)])
    store = AuditStore(tmp_path / "audit.db")
    store.record_activation(policy_set, actor="tester")
    drawn = recorded_thresholds(store, policy_set.hash)
    assert drawn["volatility"].value == 0.3
    assert drawn["drift_score"] == DEFAULT_THRESHOLDS["drift_score"]
    # An unknown set falls back to the defaults rather than drawing nothing.
    assert recorded_thresholds(store, "0" * 64) == DEFAULT_THRESHOLDS
    store.close()
