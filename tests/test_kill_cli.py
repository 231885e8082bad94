"""The kill function through the real CLI: it cancels what it should and nothing else, latches
a halt for its scope, records who and why with a critical alert, and only a resume by a
named person ends it. Resting limit orders of the paper broker give it something to cancel."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.audit.store import AuditStore
from engine.execution import approvals
from engine.execution import kill as killing
from engine.execution import state as trading
from engine.execution.activity import Activity
from engine.execution.approval_policy import ApprovalEvaluator
from engine.execution.broker import BrokerOrder
from engine.execution.gateway import Controls, Gateway
from engine.execution.order_policy import OrderPolicyEvaluator
from engine.execution.paper import PaperBroker, init_account
from engine.execution.records import ORDER
from engine.policy.model import PolicySet
from engine.timeutil import format_utc, utc_now
from tests.conftest import RunCli, access_text

CLEAR = {"drift_score": 0.1, "volatility": 0.2, "coherence": 0.8, "frs": 0.8,
         "meta_reliability": 0.8}


class Book:
    def __init__(self, root: Path, run: RunCli) -> None:
        self.root = root
        self.run = run
        self.audit = str(root / "audit.db")
        self.broker = str(root / "paper.db")
        init_account(self.broker, 1_000_000, {"AAA": 100, "BBB": 100})

    def facts(self, aaa: float = 100.0, bbb: float = 50.0, ts: str | None = None) -> str:
        ts = ts or format_utc(utc_now())
        path = self.root / f"facts-{aaa}-{bbb}.jsonl"
        path.write_text("".join(json.dumps({"ts": ts, "symbol": s, "price": p, **CLEAR}) + "\n"
                                for s, p in (("AAA", aaa), ("BBB", bbb))), encoding="utf-8")
        return str(path)

    def order(self, symbol: str, side: str, shares: int, price: float,
              *extra: str) -> dict[str, Any]:
        proc = self.run("order", "--symbol", symbol, "--side", side, "--shares", str(shares),
                        "--price", repr(price), "--facts", self.facts(), "--audit", self.audit,
                        "--broker", self.broker, "--format", "json", *extra)
        assert proc.returncode in (0, 1), proc.stderr
        doc: dict[str, Any] = json.loads(proc.stdout)
        return doc

    def kill(self, *args: str) -> Any:
        return self.run("kill", *args, "--audit", self.audit, "--broker", self.broker)

    def open_orders(self) -> dict[str, str]:
        return {o.client_id: o.symbol for o in PaperBroker(self.broker).open_orders()}


@pytest.fixture
def book(tmp_path: Path, invoke_cli: RunCli) -> Book:
    return Book(tmp_path, invoke_cli)


def _resting(book: Book) -> tuple[str, str, str]:
    """A resting buy of AAA, a resting buy and a resting sell of BBB (limits within the 5%
    collar, away from the market)."""
    a = book.order("AAA", "BUY", 10, 96.0, "--limit")
    b = book.order("BBB", "BUY", 10, 48.0, "--limit")
    c = book.order("BBB", "SELL", 10, 52.0, "--limit")
    for doc in (a, b, c):
        assert doc["status"] == "sent", doc
    return a["client_id"], b["client_id"], c["client_id"]


def _queue(book: Book, symbol: str, side: str) -> str:
    now = utc_now()
    with AuditStore(book.audit) as store:
        item = approvals.request(store, item_id=f"wait-{symbol}-{side}", symbol=symbol,
                                 side=side, shares=5, price=100.0, rule="large-order-approval",
                                 decision_id="d-1", requested_at=now, ttl_seconds=3600,
                                 context={"run_id": None})
        assert item is not None
        return item.item_id


def test_a_limit_order_rests_until_the_next_cycle_crosses_it(book: Book) -> None:
    aaa, _, _ = _resting(book)
    assert aaa in book.open_orders()
    step = book.run("step", "--facts", book.facts(aaa=97.0), "--audit", book.audit,
                    "--broker", book.broker, "--format", "json")
    assert step.returncode == 0, step.stderr
    assert aaa in book.open_orders()        # 97 does not reach a buy limit of 96
    step = book.run("step", "--facts", book.facts(aaa=95.5), "--audit", book.audit,
                    "--broker", book.broker, "--format", "json")
    assert step.returncode == 0, step.stderr
    assert aaa not in book.open_orders()    # crossed: filled at the market, 95.5
    filled = PaperBroker(book.broker).order(aaa)
    assert filled is not None and filled.fill_price == 95.5
    with AuditStore(book.audit) as store:
        statuses = [r.body["status"] for r in store.find(aaa) if r.kind == "order"]
    assert statuses[-1] == "filled"


def test_kill_of_one_symbol_cancels_its_orders_and_approvals_and_nothing_else(
        book: Book) -> None:
    aaa, bbb_buy, bbb_sell = _resting(book)
    waiting_aaa, waiting_bbb = _queue(book, "AAA", "BUY"), _queue(book, "BBB", "SELL")
    proc = book.kill("--symbol", "AAA", "--reason", "bad fills in AAA", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["cancelled_orders"] == [aaa]
    assert doc["cancelled_approvals"] == [waiting_aaa]
    assert set(book.open_orders()) == {bbb_buy, bbb_sell}
    with AuditStore(book.audit) as store:
        pending = {i.item_id for i in approvals.pending(store)}
        [kill] = store.records("kill")
        [alert] = [r for r in store.records("alert") if r.body.get("kind") == "kill"]
    assert pending == {waiting_bbb}
    assert (kill.body["by"], kill.body["reason"]) == ("me", "bad fills in AAA")
    assert kill.body["orders"] == [aaa] and kill.body["approvals"] == [waiting_aaa]
    assert alert.body["severity"] == "critical"
    # The scope is latched: AAA is refused, BBB still trades.
    refused = book.order("AAA", "SELL", 1, 100.0)
    assert (refused["status"], refused["rule"]) == ("denied", "kill-switch")
    assert "by me" in refused["reason"]
    assert book.order("BBB", "SELL", 1, 50.0)["status"] == "filled"
    # Only a person with the resume action ends it, and says why.
    trader_only = book.root / "trader-access.yaml"
    trader_only.write_text(access_text(me_roles=("trader",)), encoding="utf-8")
    refused_resume = book.run("resume", "--reason", "fixed", "--audit", book.audit,
                              "--access", str(trader_only))
    assert refused_resume.returncode == 1 and "resume" in refused_resume.stderr
    assert book.order("AAA", "SELL", 1, 100.0)["rule"] == "kill-switch"
    resumed = book.run("resume", "--reason", "feed fixed", "--audit", book.audit)
    assert resumed.returncode == 0, resumed.stderr
    assert book.order("AAA", "SELL", 1, 100.0)["status"] == "filled"


def test_kill_of_one_side_of_the_book(book: Book) -> None:
    aaa, bbb_buy, bbb_sell = _resting(book)
    proc = book.kill("--all", "--side", "BUY", "--reason", "stop buying", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert sorted(json.loads(proc.stdout)["cancelled_orders"]) == sorted([aaa, bbb_buy])
    assert set(book.open_orders()) == {bbb_sell}
    assert book.order("BBB", "BUY", 1, 50.0)["rule"] == "kill-switch"
    assert book.order("BBB", "SELL", 1, 50.0)["status"] == "filled"


def test_kill_of_the_whole_book_halts_it(book: Book) -> None:
    _resting(book)
    proc = book.kill("--all", "--reason", "runaway strategy", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert len(doc["cancelled_orders"]) == 3
    assert doc["filled_before_cancel"] == []
    assert doc["trading_state"]["state"] == "HALTED"
    assert book.open_orders() == {}
    assert book.order("BBB", "SELL", 1, 50.0)["rule"] == "kill-switch"


def test_kill_of_the_whole_book_through_real_processes(tmp_path: Path,
                                                       run_cli: RunCli) -> None:
    """The same kill, every command (orders, cycle, kill) a process of its own."""
    test_kill_of_the_whole_book_halts_it(Book(tmp_path, run_cli))


@pytest.mark.parametrize("args", [
    ("--reason", "why"),                              # no scope
    ("--all", "--symbol", "AAA", "--reason", "why"),  # two scopes
    ("--side", "BUY", "--reason", "why"),             # a side of what?
    ("--all",),                                       # no reason
])
def test_kill_refuses_an_unclear_order(book: Book, args: tuple[str, ...]) -> None:
    proc = book.kill(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    with AuditStore(book.audit) as store:
        assert store.records("kill") == []


def test_kill_needs_the_kill_action(book: Book) -> None:
    aaa, _, _ = _resting(book)
    trader_only = book.root / "trader-access.yaml"
    trader_only.write_text(access_text(me_roles=("trader",)), encoding="utf-8")
    proc = book.kill("--all", "--reason", "panic", "--access", str(trader_only))
    assert proc.returncode == 1 and "kill" in proc.stderr
    assert aaa in book.open_orders()
    with AuditStore(book.audit) as store:
        assert store.records("kill") == []



def test_the_kill_function_is_whole_without_the_cli(book: Book) -> None:
    """What the service calls: the engine function alone cancels, latches, records and raises
    the critical alert, for one side of the whole book."""
    aaa, bbb_buy, bbb_sell = _resting(book)
    with AuditStore(book.audit) as store:
        result = killing.kill(store, PaperBroker(book.broker), symbols=[], side="SELL",
                              by="risk-desk", reason="sell feed down", now=utc_now())
        alerts = [r.body for r in store.records("alert") if r.body.get("kind") == "kill"]
        state = trading.load(store)
        with pytest.raises(trading.ResumeRefused, match="side must be BUY or SELL"):
            killing.kill(store, PaperBroker(book.broker), symbols=[], side="sell",
                         by="risk-desk", reason="typo", now=utc_now())
        assert len(store.records("kill")) == 1
    assert result.cancelled_orders == (bbb_sell,)
    assert set(book.open_orders()) == {aaa, bbb_buy}
    assert [a["severity"] for a in alerts] == ["critical"]
    assert "risk-desk" in alerts[0]["message"]
    assert state.kill_for("AAA", "SELL") is not None and state.kill_for("AAA", "BUY") is None


class FilledOnTheWay(PaperBroker):
    """A real paper account whose market reaches resting orders between the moment the open
    orders are listed and the moment they are cancelled: another connection fills them, as a
    cycle in another process would."""

    def __init__(self, path: str, prices: dict[str, float]) -> None:
        super().__init__(path)
        self.prices = prices

    def open_orders(self) -> list[BrokerOrder]:
        listed = super().open_orders()
        PaperBroker(self.path).fill_open(self.prices)
        return listed


def _latest(store: AuditStore, cid: str) -> dict[str, Any]:
    return [r.body for r in store.find(cid) if r.kind == ORDER][-1]


def test_a_fill_that_beat_the_kill_is_recorded_as_a_fill(book: Book) -> None:
    """The AAA buy fills at 95 while the kill is on its way: the kill withdraws only the two
    BBB orders, says the AAA one traded, and records it as the fill it is."""
    aaa, bbb_buy, bbb_sell = _resting(book)
    with AuditStore(book.audit) as store:
        result = killing.kill(store, FilledOnTheWay(book.broker, {"AAA": 95.0}), symbols=[],
                              side=None, by="risk-desk", reason="runaway", now=utc_now())
        record = _latest(store, aaa)
        (alert,) = [r.body for r in store.records("alert") if r.body.get("kind") == "kill"]
        state = trading.load(store)
        cancelled = {cid: _latest(store, cid)["status"] for cid in (bbb_buy, bbb_sell)}
    assert sorted(result.cancelled_orders) == sorted([bbb_buy, bbb_sell])
    assert result.filled_orders == (aaa,)
    assert (record["status"], record["fill_price"]) == ("filled", 95.0)
    assert record["reason"].startswith("filled before the cancellation arrived")
    assert cancelled == {bbb_buy: "cancelled", bbb_sell: "cancelled"}
    assert "2 open order(s) and pending approval(s) cancelled; 1 open order(s) had filled" \
        in alert["message"]
    assert PaperBroker(book.broker).positions()["AAA"] == 110
    assert book.open_orders() == {}
    assert state.state is trading.TradingState.HALTED


def test_a_halt_that_finds_an_order_filled_counts_the_fill(book: Book) -> None:
    """Entering a halt cancels every open order; one the market filled first is a fill, in
    the record and in the execution log the order facts read."""
    aaa, bbb_buy, bbb_sell = _resting(book)
    with AuditStore(book.audit) as store:
        gw = Gateway(store, FilledOnTheWay(book.broker, {"AAA": 95.0, "BBB": 53.0}),
                     ApprovalEvaluator(PolicySet(())),
                     controls=Controls.fresh(OrderPolicyEvaluator(PolicySet(()))))
        now = utc_now()
        done = gw.cancel_open(now, "drift-spike-halt")
        statuses = {cid: _latest(store, cid)["status"] for cid in (aaa, bbb_buy, bbb_sell)}
        rebuilt = Activity.from_store(store, None, now).log
    # At 95 the AAA buy (limit 96) fills, at 53 the BBB sell (limit 52) does; the BBB buy
    # (limit 48) rests until the halt withdraws it.
    assert done.cancelled == (bbb_buy,)
    assert sorted(done.filled) == sorted([aaa, bbb_sell])
    assert statuses == {aaa: "filled", bbb_buy: "cancelled", bbb_sell: "filled"}
    assert gw.controls.log.fills_within("AAA", now, timedelta(minutes=1)) == 1
    assert rebuilt.fills_within("BBB", now, timedelta(minutes=1)) == 1
