"""Every default pre-trade control of policies/pretrade.yaml at its boundary, through the real
CLI: exactly at the limit, just under and just over.

Limits on amounts and the loss breakers are met with `fugger order` (the wall clock does not
matter to them). Limits on time windows (message throttles, duplicates, repeated fills) are
met with `fugger step --clock snapshot`, whose now is the snapshot's `ts`, sending one order a
person approved beforehand: the execution log before it is written into a real audit store at
known times, so no test depends on how fast the machine is.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.audit.store import AuditStore
from engine.execution import approvals
from engine.execution.activity import EquityMarks
from engine.execution.paper import init_account
from engine.execution.records import ORDER
from engine.timeutil import format_utc, parse_utc, utc_now
from tests.conftest import REPO_ROOT, RunCli, access_text

T = parse_utc("2024-03-01T15:00:00Z")
CLEAR = {"drift_score": 0.1, "volatility": 0.2, "coherence": 0.8, "frs": 0.8,
         "meta_reliability": 0.8}


def snapshot(symbol: str = "AAA", price: float = 100.0, ts: datetime = T) -> dict[str, Any]:
    return {"ts": format_utc(ts), "symbol": symbol, "price": price, **CLEAR}


@dataclass
class Desk:
    """A paper account, an audit store and a facts file in one temporary directory."""

    root: Path
    run: RunCli

    @property
    def audit(self) -> str:
        return str(self.root / "audit.db")

    @property
    def broker(self) -> str:
        return str(self.root / "paper.db")

    def account(self, cash: float, positions: dict[str, int] | None = None) -> None:
        init_account(self.broker, cash, positions or {})

    def facts(self, *snaps: dict[str, Any]) -> str:
        path = self.root / "facts.jsonl"
        path.write_text("".join(json.dumps(s) + "\n" for s in snaps), encoding="utf-8")
        return str(path)

    def order(self, side: str, shares: int, price: float, *extra: str,
              policies: str = "policies") -> dict[str, Any]:
        # Live: the snapshot is from now. BBB's price is given too: without it a book holding
        # BBB has no known equity.
        now = utc_now()
        facts = self.facts(snapshot(ts=now), snapshot("BBB", 50.0, ts=now))
        proc = self.run("order", "--symbol", "AAA", "--side", side, "--shares", str(shares),
                        "--price", repr(price), "--facts", facts,
                        "--policies", policies, "--audit", self.audit,
                        "--broker", self.broker, "--format", "json", *extra)
        assert proc.returncode in (0, 1), proc.stderr
        doc: dict[str, Any] = json.loads(proc.stdout)
        assert (proc.returncode == 1) == (doc["status"] == "denied")
        return doc

    def marks(self, *marks: tuple[datetime, float]) -> None:
        with AuditStore(self.audit) as store:
            store.append_many([EquityMarks.record(None, at, equity) for at, equity in marks])


@pytest.fixture
def desk(tmp_path: Path, invoke_cli: RunCli) -> Desk:
    return Desk(tmp_path, invoke_cli)


def _state(desk: Desk) -> dict[str, Any]:
    with AuditStore(desk.audit) as store:
        latest = store.latest("trading_state")
        return dict(latest.body) if latest else {}


# --- amounts: fugger order ----------------------------------------------------------------


@pytest.mark.parametrize(("shares", "status", "rule"), [
    (2500, "filled", None),                      # exactly 25% of equity
    (2499, "filled", None),                      # just under
    (2501, "denied", "max-order-pct-equity"),    # just over
])
def test_order_above_a_quarter_of_equity_is_denied(desk: Desk, shares: int, status: str,
                                                   rule: str | None) -> None:
    desk.account(999_900, {"AAA": 1})  # equity 1,000,000 at 100
    doc = desk.order("BUY", shares, 100.0)
    assert (doc["status"], doc["rule"]) == (status, rule)
    assert doc["facts"]["order_notional_pct_equity"] == pytest.approx(shares / 100)


@pytest.mark.parametrize(("shares", "status", "rule"), [
    (2500, "filled", None), (2499, "filled", None), (2501, "denied", "max-order-pct-equity")])
def test_a_control_at_its_boundary_through_real_processes(
        tmp_path: Path, run_cli: RunCli, shares: int, status: str, rule: str | None) -> None:
    """The same boundary with `fugger order` a process of its own: exit 1 when denied."""
    test_order_above_a_quarter_of_equity_is_denied(Desk(tmp_path, run_cli), shares, status,
                                                   rule)


@pytest.mark.parametrize(("shares", "status", "rule"), [
    # Passing the controls, an order this large waits for a person (approval policy).
    (10_000, "pending_approval", "large-order-approval"),   # exactly 1,000,000
    (9_999, "pending_approval", "large-order-approval"),
    (10_001, "denied", "max-order-notional"),
])
def test_order_above_one_million_is_denied(desk: Desk, shares: int, status: str,
                                           rule: str | None) -> None:
    desk.account(9_999_900, {"AAA": 1})  # equity 10,000,000: 10% is far from 25%
    doc = desk.order("BUY", shares, 100.0)
    assert (doc["status"], doc["rule"]) == (status, rule)


def test_an_exit_is_not_capped_by_size(desk: Desk) -> None:
    """A cap that refused an exit would keep the risk it is there to limit."""
    desk.account(1_000_000, {"AAA": 40_000})  # a position of 80% of equity
    doc = desk.order("SELL", 40_000, 100.0)
    assert doc["facts"]["order_notional_pct_equity"] == pytest.approx(80.0)
    assert doc["facts"]["order_notional"] == 4_000_000
    assert (doc["status"], doc["rule"]) == ("filled", None)


@pytest.mark.parametrize(("price", "status", "rule"), [
    (105.0, "filled", None),                     # exactly 5% from the reference 100
    (104.99, "filled", None),
    (105.01, "denied", "price-collar"),
    (94.99, "denied", "price-collar"),           # below the reference too
])
def test_price_collar(desk: Desk, price: float, status: str, rule: str | None) -> None:
    desk.account(999_900, {"AAA": 1})
    doc = desk.order("SELL", 1, price)
    assert (doc["status"], doc["rule"]) == (status, rule)


@pytest.mark.parametrize(("cash", "halted"), [
    (969_900, True),                             # equity 970,000: exactly -3%
    (970_000, False),                            # -2.99%
    (969_800, True),                             # -3.01%
])
def test_daily_loss_halts_and_latches(desk: Desk, cash: float, halted: bool) -> None:
    desk.account(cash, {"AAA": 1})
    desk.marks((utc_now() - timedelta(days=1), 1_000_000))
    doc = desk.order("SELL", 1, 100.0)
    if halted:
        assert (doc["status"], doc["rule"]) == ("denied", "daily-loss-halt")
        assert doc["trading_state"]["state"] == "HALTED"
        assert _state(desk)["rule"] == "daily-loss-halt"
        # Latched: the next order is refused by the halt itself, whatever its size.
        again = desk.order("SELL", 1, 100.0)
        assert (again["status"], again["rule"]) == ("denied", "daily-loss-halt")
        assert "a person must resume" in again["reason"]
    else:
        assert doc["status"] == "filled"
        assert doc["trading_state"]["state"] == "ACTIVE"


@pytest.mark.parametrize(("cash", "halted"), [
    (849_900, True),                             # equity 850,000: exactly 15% below the peak
    (850_000, False),                            # 14.99%
    (849_800, True),                             # 15.01%
])
def test_drawdown_from_peak_halts(desk: Desk, cash: float, halted: bool) -> None:
    desk.account(cash, {"AAA": 1})
    now = utc_now()
    # The peak two days ago; yesterday closed where the book is now, so the day lost nothing.
    desk.marks((now - timedelta(days=2), 1_000_000), (now - timedelta(days=1), cash + 100))
    doc = desk.order("SELL", 1, 100.0)
    assert doc["facts"]["daily_pnl_pct"] == 0
    if halted:
        assert (doc["status"], doc["rule"]) == ("denied", "drawdown-halt")
    else:
        assert doc["status"] == "filled"


def test_an_order_without_a_reference_price_fails_closed(desk: Desk) -> None:
    desk.account(1_000_000)
    no_price = {k: v for k, v in snapshot(ts=utc_now()).items() if k != "price"}
    proc = desk.run("order", "--symbol", "AAA", "--side", "BUY", "--shares", "1",
                    "--price", "100", "--facts", desk.facts(no_price),
                    "--audit", desk.audit, "--broker", desk.broker, "--format", "json")
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["status"] == "denied"
    assert doc["rule"] == "fact-missing:price_deviation"


# --- time windows: fugger step with an approved order --------------------------------------


def _policies_without_rotation(root: Path) -> str:
    """The shipped safety, approval and order policies: with no rotation, the only order of a
    step is the approved one."""
    folder = root / "policies"
    folder.mkdir()
    for name in ("safety.yaml", "approval.yaml", "pretrade.yaml"):
        shutil.copy(REPO_ROOT / "policies" / name, folder / name)
    return str(folder)


def _log(store: AuditStore, *entries: tuple[float, str, str, int, str]) -> None:
    """Execution-log records: (seconds before T, symbol, side, shares, status)."""
    store.append_many([(ORDER, f"prior-{i}", {
        "run_id": None, "ts": format_utc(T - timedelta(seconds=ago)), "client_id": f"prior-{i}",
        "symbol": sym, "side": side, "shares": shares, "status": status})
        for i, (ago, sym, side, shares, status) in enumerate(entries)])


def _approved(store: AuditStore, side: str = "BUY", shares: int = 10) -> None:
    approvals.request(store, item_id="manual-1", symbol="AAA", side=side, shares=shares,
                      price=100.0, rule="large-order-approval", decision_id="d-1",
                      requested_at=T - timedelta(minutes=5), ttl_seconds=900,
                      context={"run_id": None})
    approvals.decide(store, "manual-1", outcome="approved", by="bob", reason="checked",
                     now=T - timedelta(minutes=4))


def _step(desk: Desk, *log: tuple[float, str, str, int, str], side: str = "BUY",
          shares: int = 10) -> dict[str, Any]:
    desk.account(1_000_000, {"AAA": 100, "BBB": 100})
    with AuditStore(desk.audit) as store:
        _log(store, *log)
        _approved(store, side, shares)
    proc = desk.run("step", "--clock", "snapshot",
                    "--policies", _policies_without_rotation(desk.root),
                    "--facts", desk.facts(snapshot(), snapshot("BBB", 50.0)),
                    "--audit", desk.audit, "--broker", desk.broker, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    [line] = [o for o in doc["orders"] if o["client_id"] == "manual-1"]
    return {**line, "trading_state": doc["trading_state"]}


def _sent(n: int, ago: float) -> list[tuple[float, str, str, int, str]]:
    """`n` orders of other symbols and sizes sent `ago` seconds before T."""
    return [(ago, "BBB", "SELL", i + 1, "submitting") for i in range(n)]


@pytest.mark.parametrize(("prior", "status", "rule"), [
    (29, "filled", None),                        # this is the 30th in a minute: at the limit
    (28, "filled", None),                        # the 29th
    (30, "denied", "message-throttle-minute"),   # the 31st
])
def test_orders_per_minute_throttle(desk: Desk, prior: int, status: str,
                                    rule: str | None) -> None:
    line = _step(desk, *_sent(prior, 30.0))
    assert (line["status"], line["rule"]) == (status, rule)


def test_an_order_a_minute_ago_is_outside_the_window(desk: Desk) -> None:
    line = _step(desk, *_sent(30, 60.0))
    assert line["status"] == "filled"


@pytest.mark.parametrize(("prior", "status", "rule"), [
    (4, "filled", None),                         # the 5th in a second
    (3, "filled", None),
    (5, "denied", "message-throttle-second"),    # the 6th
])
def test_orders_per_second_throttle(desk: Desk, prior: int, status: str,
                                    rule: str | None) -> None:
    line = _step(desk, *_sent(prior, 0.5))
    assert (line["status"], line["rule"]) == (status, rule)


@pytest.mark.parametrize(("ago", "status", "rule"), [
    (10.0, "denied", "duplicate-order"),         # exactly 10 s later
    (9.9, "denied", "duplicate-order"),
    (10.1, "filled", None),
])
def test_duplicate_order_within_ten_seconds(desk: Desk, ago: float, status: str,
                                            rule: str | None) -> None:
    line = _step(desk, (ago, "AAA", "BUY", 10, "submitting"))
    assert (line["status"], line["rule"]) == (status, rule)


def test_a_different_size_is_no_duplicate(desk: Desk) -> None:
    line = _step(desk, (1.0, "AAA", "BUY", 11, "submitting"))
    assert line["status"] == "filled"


@pytest.mark.parametrize(("fills", "reducing"), [(10, True), (9, False), (11, True)])
def test_repeated_fills_make_the_book_reduce_only(desk: Desk, fills: int,
                                                  reducing: bool) -> None:
    line = _step(desk, *[(30.0, "AAA", "BUY", i + 1, "filled") for i in range(fills)])
    if reducing:
        assert (line["status"], line["rule"]) == ("denied", "repeated-execution-reduce-only")
        assert line["trading_state"]["state"] == "REDUCING"
        assert line["trading_state"]["reduce_only"] is True
    else:
        assert line["status"] == "filled"
        assert line["trading_state"]["reduce_only"] is False


def test_reduce_only_lets_a_sale_out_and_latches_until_re_enabled(desk: Desk) -> None:
    line = _step(desk, *[(30.0, "AAA", "BUY", i + 1, "filled") for i in range(10)],
                 side="SELL")
    assert line["status"] == "filled"  # it reduces: allowed, and the latch is set
    assert line["trading_state"]["reduce_only"] is True
    # Now a buy is refused by the latch, even with the fills long gone.
    buy = desk.order("BUY", 1, 100.0)
    assert buy["status"] == "denied"
    assert buy["rule"] == "repeated-execution-reduce-only"
    assert "re-enable" in buy["reason"]
    # Only a person with the reenable action may lift it, and says why.
    trader_only = desk.root / "trader-access.yaml"
    trader_only.write_text(access_text(me_roles=("trader",)), encoding="utf-8")
    refused = desk.run("resume", "--reduce-only", "--reason", "checked", "--audit", desk.audit,
                       "--access", str(trader_only))
    assert refused.returncode == 1 and "reenable" in refused.stderr
    assert _state(desk)["reduce_only"] is True
    no_reason = desk.run("resume", "--reduce-only", "--reason", "", "--audit", desk.audit)
    assert no_reason.returncode == 1 and "--reason" in no_reason.stderr
    enabled = desk.run("resume", "--reduce-only", "--reason", "fills checked",
                       "--audit", desk.audit)
    assert enabled.returncode == 0, enabled.stderr
    assert _state(desk)["state"] == "ACTIVE"
    after = desk.order("BUY", 1, 100.0)
    assert after["status"] in ("filled", "pending_approval"), (after["rule"], after["reason"])


def test_audit_why_of_an_order_the_policy_denied_shows_its_rule_and_facts(desk: Desk) -> None:
    desk.account(999_900, {"AAA": 1})
    doc = desk.order("SELL", 1, 105.01)
    assert doc["rule"] == "price-collar"
    proc = desk.run("audit", "why", doc["client_id"], "--audit", desk.audit)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    (head,) = [line for line in lines if line.startswith("Order policy ")]
    assert head.startswith("Order policy pretrade-controls: DENY by rule price-collar at "
                           "policies/pretrade.yaml:")
    assert any("price_deviation" in line and "-> true" in line for line in lines)
    assert "[" not in head  # plain text: no markup reaches the reader
