"""Screenshots of the dashboard's four main pages for docs/: a real `fugger serve` with fresh
stores, a few days of examples/history.jsonl decided through the API, one order held for
approval, then headless Chromium logged in as the one person.

    python -m benchmarks.screenshots        (make screenshots)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

from benchmarks.api import _fugger
from engine.access.identity import os_user
from engine.access.loading import load_access
from engine.access.tokens import create
from engine.audit.store import AuditStore
from engine.client import FuggerClient
from engine.order_messages import OrderIn
from engine.timeutil import format_utc, utc_now

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PASSWORD = "a password for the screenshots"
ACCESS = """apiVersion: fuggerbot/v1
kind: AccessPolicy
metadata: {{name: demo-access, version: 1.0.0}}
spec:
  roles: {{trader: [trade], approver: [approve, reject], risk: [resume, kill, reenable],
          admin: [activate, rollback, init_account, manage_tokens]}}
  people:
    - {{name: dana, os_user: {user}, roles: [approver, risk, admin]}}
  services:
    - {{name: strategy, roles: [trader]}}
"""
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        access = home / "access.yaml"
        access.write_text(ACCESS.format(user=os_user()), encoding="utf-8")
        subprocess.run([*_fugger_cmd(), "access", "passwd", "dana", "--access", str(access),
                        "--password-stdin"], input=PASSWORD + "\n", text=True, check=True,
                       cwd=ROOT)
        audit, broker = str(home / "audit.db"), str(home / "paper.db")
        _fugger(home, "paper", "init", "--cash", "1000000", "--broker", broker, "--audit", audit)
        with AuditStore(audit) as store:
            token, _ = create(store, load_access(str(access)), "strategy", by="dana",
                              ttl=timedelta(hours=1), now=utc_now())
        port = 8731
        server = _fugger(home, "serve", "--policies", str(ROOT / "policies"), "--audit", audit,
                         "--broker", broker, "--port", str(port), "--access", str(access),
                         wait=False)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait(url)
            _trade(url, token)
            _shoot(url)
        finally:
            server.terminate()
            server.communicate()


def _fugger_cmd() -> list[str]:
    return [sys.executable, "-m", "cli.main"]


def _wait(url: str) -> None:
    for _ in range(600):
        try:
            httpx.get(f"{url}/v1/health", timeout=5)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("fugger serve did not start")


def _trade(url: str, token: str) -> None:
    days: dict[str, list[dict[str, object]]] = {}
    with (ROOT / "examples" / "history.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if "2014-11-17" <= row["ts"][:10] <= "2014-11-26":
                days.setdefault(row["ts"], []).append(row)
    with FuggerClient(url, token) as bot:
        for rows in (days[k] for k in sorted(days)):
            snaps = [{**r, "ts": format_utc(utc_now())} for r in rows]
            bot.decide(snaps)
        sp = float(str(next(r for r in snaps if r["symbol"] == "SP500")["price"]))
        bot.submit([OrderIn("SP500", "BUY", 200, sp, "rebalance-sp500-large")])


def _shoot(url: str) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 720})
        page.goto(url + "/")
        page.fill("#login-name", "dana")
        page.fill("#login-password", PASSWORD)
        page.click("#login-form button[type=submit]")
        page.wait_for_selector("#who:has-text('dana')")
        for name in ("overview", "approvals", "decisions", "policies"):
            page.goto(f"{url}/#{name}")
            page.wait_for_selector(f"#page-{name}:not([hidden])")
            page.wait_for_timeout(800)  # let the page's first fetches land
            page.screenshot(path=str(DOCS / f"dashboard-{name}.png"), full_page=False)
        browser.close()


if __name__ == "__main__":
    main()
