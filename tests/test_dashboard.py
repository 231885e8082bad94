"""The dashboard in a real browser (headless Chromium) against a real `fugger serve`: people log
in with the passwords `fugger access passwd` set, approve and resume from the page while a bot
written against engine/client.py trades a replayed month through the API; every action taken
from the page is in the audit store under the person's name."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import chromium
from conftest import REPO_ROOT, access_text, run_fugger
from playwright.sync_api import Browser, Page, expect
from serve_fixture import Server, serving

from engine.audit.store import AuditStore
from engine.client import FuggerClient
from engine.order_messages import OrderIn
from engine.timeutil import format_utc, utc_now

pytestmark = pytest.mark.browser

PASSWORDS = {"ann": "ann approves carefully", "rita": "rita watches the risk",
             "tim": "tim only trades here"}
#: A page waits this long for what the service does (a hang guard, not a speed requirement).
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("dashboard")
    access = home / "access.yaml"
    access.write_text(access_text(), encoding="utf-8")
    for name, password in PASSWORDS.items():
        done = run_fugger(["access", "passwd", name, "--access", str(access),
                           "--password-stdin"], stdin=password + "\n")
        assert done.returncode == 0, done.stderr
    assert "$argon2id$" in access.read_text(encoding="utf-8")
    assert not any(p in access.read_text(encoding="utf-8") for p in PASSWORDS.values())
    with serving(home / "serve", holders=("tim",), access=access) as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def logged_in(browser: Browser, server: Server, name: str) -> Page:
    page = browser.new_context().new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(server.url + "/")
    page.fill("#login-name", name)
    page.fill("#login-password", PASSWORDS[name])
    page.click("#login-form button[type=submit]")
    expect(page.locator("#who")).to_have_text(name, timeout=WAIT_MS)
    return page


def month() -> list[list[dict[str, Any]]]:
    """The 20 trading days of examples/history.jsonl (2014-11-03 to 2014-12-01), a day a list."""
    days: dict[str, list[dict[str, Any]]] = {}
    with (REPO_ROOT / "examples" / "history.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if "2014-11-03" <= row["ts"][:10] <= "2014-12-01":
                days.setdefault(row["ts"], []).append(row)
    return [days[k] for k in sorted(days)]


def test_a_bot_trades_a_month_while_people_approve_and_resume_from_the_dashboard(
        server: Server, browser: Browser) -> None:
    ann = logged_in(browser, server, "ann")
    ann.goto(server.url + "/#approvals")
    rita = logged_in(browser, server, "rita")
    days = month()
    assert len(days) == 20
    big_day, broken_day = 4, 9
    filled: list[str] = []
    with FuggerClient(server.url, server.tokens["tim"]) as bot:
        for n, day in enumerate(days):
            # Live facts are dated now: the service judges them on the wall clock.
            snaps = [{**row, "ts": format_utc(utc_now())} for row in day]
            if n == broken_day:  # the feed sends a drift score that is not a number
                snaps = [{**s, "drift_score": "n/a"} if s["symbol"] == "WTI" else s
                         for s in snaps]
            decisions = bot.decide(snaps)
            if n == broken_day:
                assert {d.symbol: d.action for d in decisions}["WTI"] == "halt"
                assert bot.state()["trading_state"]["state"] == "HALTED"
                rita.goto(server.url + "/#overview")
                expect(rita.locator("#state")).to_have_text("HALTED")
            if n == broken_day + 1:
                # The person resumes from the page once the feed is sound again.
                expect(rita.locator("#resume")).to_be_visible()
                rita.fill("#resume-reason", "drift feed fixed, checked by hand")
                rita.click("#resume")
                expect(rita.locator("#state")).to_have_text("ACTIVE")
            orders = [OrderIn(d.symbol, "BUY", max(1, int(5000 / s["price"])), s["price"],
                              f"bot-{n}-{d.symbol}")
                      for d, s in zip(decisions, snaps, strict=True)
                      if d.all_clear and d.symbol]
            if n == big_day:
                sp = next(s for s in snaps if s["symbol"] == "SP500")
                orders.append(OrderIn("SP500", "BUY", 200, sp["price"], "bot-big"))
            outcomes = bot.submit(orders) if orders else []
            state = bot.state()["trading_state"]["state"]
            for o in outcomes:
                assert o.held == (o.client_id == "bot-big"), o
                assert o.status in ("filled", "pending_approval") or state == "HALTED", o
            if n == big_day:
                row = ann.locator("#approvals-rows tr", has_text="bot-big")
                expect(row).to_be_visible()  # arrived without a reload
                expect(row.locator(".progress")).to_have_text("0 of 1")
                row.locator("input.reason").fill("sized on purpose for the month")
                row.locator("button.approve").click()
                expect(row).to_have_count(0)
            filled = [o["client_id"] for o in bot.orders(limit=1000)
                      if o["status"] == "filled"]
            if n == big_day + 1:
                assert "bot-big" in filled  # sent with the first decision after approval
    ann.goto(server.url + "/#orders")
    expect(ann.locator("#orders-rows tr", has_text="bot-big")).to_contain_text("filled")
    assert len(filled) > 20

    with AuditStore(server.audit) as store:
        access = [r.body for r in store.iter_records("access")
                  if r.body.get("via") == "dashboard session" and r.body["allowed"]]
        decided = [r.body for r in store.find("bot-big") if r.kind == "approval_decided"]
    assert {(b["by"], b["action"]) for b in access} >= {("ann", "approve"),
                                                        ("rita", "resume")}
    assert [(b["outcome"], b["by"], b["reason"]) for b in decided] == [
        ("approved", "ann", "sized on purpose for the month")]
    ann.context.close()
    rita.context.close()


def test_a_trader_sees_no_approve_button_and_the_api_refuses_him(
        server: Server, browser: Browser) -> None:
    wrong = browser.new_context().new_page()
    wrong.goto(server.url + "/")
    wrong.fill("#login-name", "tim")
    wrong.fill("#login-password", "not tims password")
    wrong.click("#login-form button[type=submit]")
    expect(wrong.locator("#login-error")).to_have_text("unknown name or wrong password")
    wrong.context.close()

    with FuggerClient(server.url, server.tokens["tim"]) as bot:
        snap = {"ts": format_utc(utc_now()), "symbol": "HLD", "price": 100.0,
                "volatility": 0.2, "expected_return": 0.05, "drift_score": 0.1,
                "coherence": 0.8, "frs": 0.8, "meta_reliability": 0.8}
        bot.decide([snap])
        [held] = bot.submit([OrderIn("HLD", "BUY", 3000, 100.0, "tim-big")])
        assert held.held
    tim = logged_in(browser, server, "tim")
    tim.goto(server.url + "/#approvals")
    row = tim.locator("#approvals-rows tr", has_text="tim-big")
    expect(row).to_contain_text("approver role needed")
    expect(row.locator("button")).to_have_count(0)
    status = tim.evaluate("""async () => {
        const s = await (await fetch('/ui/session')).json();
        const r = await fetch('/v1/approvals/tim-big/approve', {method: 'POST',
            headers: {'Content-Type': 'application/json', 'X-CSRF-Token': s.csrf},
            body: JSON.stringify({reason: 'my own order'})});
        return [r.status, (await r.json()).error.code];
    }""")
    assert status == [403, "forbidden"]
    no_csrf = tim.evaluate("""async () => (await fetch('/v1/resume', {method: 'POST',
        headers: {'Content-Type': 'application/json'},
        body: JSON.stringify({reason: 'x'})})).status""")
    assert no_csrf == 403
    tim.context.close()
    with AuditStore(server.audit) as store:
        refused = [r.body for r in store.iter_records("access") if not r.body["allowed"]]
    assert ("tim", "approve", "dashboard session") in {(b["by"], b["action"], b["via"])
                                                       for b in refused}
    assert ("tim", "login") in {(b["by"], b["action"]) for b in refused}


def test_a_kill_from_the_page_withdraws_what_waits_until_a_person_resumes(
        server: Server, browser: Browser) -> None:
    with FuggerClient(server.url, server.tokens["tim"]) as bot:
        snap = {"ts": format_utc(utc_now()), "symbol": "KIL", "price": 100.0,
                "volatility": 0.2, "expected_return": 0.05, "drift_score": 0.1,
                "coherence": 0.8, "frs": 0.8, "meta_reliability": 0.8}
        bot.decide([snap])
        [held] = bot.submit([OrderIn("KIL", "BUY", 3000, 100.0, "tim-kil")])
        assert held.held
    tim = logged_in(browser, server, "tim")
    expect(tim.locator("#kill")).to_be_hidden()  # a trader holds no kill right
    tim.context.close()
    rita = logged_in(browser, server, "rita")
    rita.fill("#kill-reason", "the bot sends nonsense")
    rita.once("dialog", lambda dialog: dialog.accept())
    rita.click("#kill")
    expect(rita.locator("#state")).to_have_text("HALTED")
    with AuditStore(server.audit) as store:
        (record,) = [r.body for r in store.iter_records("kill")]
    assert (record["by"], record["reason"]) == ("rita", "the bot sends nonsense")
    assert "tim-kil" in record["approvals"]
    rita.fill("#resume-reason", "bot restarted and checked")
    rita.click("#resume")
    expect(rita.locator("#state")).to_have_text("ACTIVE")
    rita.context.close()


def test_the_page_ships_with_the_service_and_loads_nothing_from_elsewhere(
        server: Server) -> None:
    with server.client() as c:
        page = c.get("/")
        assert page.status_code == 200
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert "http" not in page.text.replace("http-equiv", "")
        js = c.get("/static/app.js").text
        assert "innerHTML" not in js and "insertAdjacentHTML" not in js
        assert c.get("/static/../app.py").status_code == 404
    assert Path(REPO_ROOT / "engine" / "service" / "static" / "app.js").is_file()


def test_rails_margins_acknowledging_an_alert_and_the_diff_of_two_activations(
        server: Server, browser: Browser) -> None:
    """Runs last: it changes the policy files the service watches."""
    with FuggerClient(server.url, server.tokens["tim"]) as bot:
        bot.decide([{"ts": format_utc(utc_now()), "symbol": "MRG", "price": 100.0,
                     "volatility": 0.2, "expected_return": 0.05, "drift_score": 0.1,
                     "coherence": 0.8, "frs": 0.8, "meta_reliability": 0.8}])
    with server.client("tim") as tim:  # a trader may not resume: refused and alerted
        assert tim.post("/v1/resume", json={"reason": "not mine"}).status_code == 403
    rita = logged_in(browser, server, "rita")
    row = rita.locator("#latest-rows tr", has_text="MRG")
    expect(row.locator("li", has_text="drift-spike-halt")).to_have_text(
        "drift_score 0.1 vs >= 0.8 (0.7 to go): drift-spike-halt → halt")

    rita.goto(server.url + "/#alerts")
    refused = rita.locator("#alerts-rows tr", has_text="tim").first
    refused.locator("button.ack").click()
    expect(refused).to_contain_text("rita at ")
    with AuditStore(server.audit) as store:
        acks = [r.body for r in store.iter_records("alert_ack")]
    assert [(a["by"], a["via"]) for a in acks] == [("rita", "dashboard session")]

    safety = server.home / "policies" / "safety.yaml"
    safety.write_text(safety.read_text(encoding="utf-8").replace(
        "version: 2.0.0", "version: 2.0.1").replace(
        "{fact: drift_score, op: \">=\", value: 0.8}",
        "{fact: drift_score, op: \">=\", value: 0.7}"), encoding="utf-8")
    with server.client("tim") as tim:
        deadline = time.monotonic() + WAIT_MS / 1000  # a hang guard
        while len(tim.get("/v1/policies").json()["history"]) < 2:
            assert time.monotonic() < deadline, "the changed policy was never activated"
            tim.get("/v1/health")  # the service looks at its files
            time.sleep(0.2)
    rita.goto(server.url + "/#policies")
    expect(rita.locator("#diff-old option")).to_have_count(2)
    rita.click("#diff-form button[type=submit]")
    changed = rita.locator("#diff-rows tr", has_text="drift-spike-halt")
    expect(changed).to_contain_text("changed")
    expect(changed).to_contain_text("drift_score >= 0.7")
    rita.context.close()
