"""Live safety through the real CLI: several snapshots of one symbol in one cycle, the clock a
live command runs on, what a resume is checked against, and what an approval still covers when
its order is sent. Each test is a user's directory with the default policies."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import FROZEN_APPROVAL, FROZEN_SAFETY, run_fugger_many, token_for
from test_execution_cli import AUDIT, PAPER, _many, _paper_account, _workspace, fugger, step

from engine.audit.store import AuditStore
from engine.clock import WALL, Clock, ClockKind
from engine.evaluator import SafetyEvaluator
from engine.execution import approvals
from engine.execution import state as trading
from engine.execution.approval_policy import ApprovalEvaluator
from engine.execution.gate import OrderIntent
from engine.execution.gateway import ORDER, Controls, Gateway
from engine.execution.order_policy import OrderPolicyEvaluator
from engine.execution.paper import PaperBroker, init_account
from engine.policy.loader import policy_set_from_texts
from engine.policy.model import PolicySet
from engine.policy.problems import PolicyError
from engine.timeutil import format_utc

CALM = {"price": 100.0, "volatility": 0.2, "expected_return": 0.05, "drift_score": 0.1,
        "coherence": 0.8, "frs": 0.8, "meta_reliability": 0.8}


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _facts(path: Path, *rows: tuple[str, dict[str, Any]], ts: datetime | None = None) -> str:
    """One snapshot per row (symbol, changes to CALM), all at `ts` (default: now) unless a row
    sets its own."""
    stamp = format_utc(ts or _now())
    with path.open("w", encoding="utf-8") as f:
        for symbol, changes in rows:
            f.write(json.dumps({"ts": stamp, "symbol": symbol, **CALM, **changes}) + "\n")
    return path.name


def _decisions(home: Path) -> list[dict[str, Any]]:
    with AuditStore(home / AUDIT, create=False) as store:
        return [r.body["decision"] for r in store.iter_records("decision")]


def _orders(home: Path) -> dict[str, list[dict[str, Any]]]:
    """Every order record, by client id, oldest first."""
    out: dict[str, list[dict[str, Any]]] = {}
    with AuditStore(home / AUDIT, create=False) as store:
        for r in store.iter_records(ORDER):
            out.setdefault(r.ref, []).append(r.body)
    return out


def _fills(home: Path) -> list[tuple[str, str, float | None]]:
    return [(o.symbol, o.side.value, o.fill_price)
            for o in PaperBroker(home / PAPER).account_summary().orders
            if o.status.value == "filled"]


# -- 1. several snapshots of one symbol in one cycle ------------------------------------------

def test_a_halting_snapshot_followed_by_a_clear_one_for_the_same_symbol_halts_the_step(
        tmp_path: Path) -> None:
    home = _workspace(tmp_path, "autonomous")
    _paper_account(home)
    facts = _facts(home / "twice.jsonl", ("AAA", {"drift_score": 0.95}), ("AAA", {}),
                   ("BBB", {"price": 50.0}))

    doc = step(home, facts)

    assert doc["decisions"]["AAA"]["action"] == "halt"
    assert doc["decisions"]["AAA"]["snapshots"] == 2
    assert doc["trading_state"]["state"] == "HALTED"
    assert [(d["symbol"], d["action"]) for d in doc["all_decisions"]] == [
        ("AAA", "halt"), ("AAA", "allow"), ("BBB", "allow")]
    assert _fills(home) == []
    # Every snapshot was decided and recorded, not only the last of each symbol.
    assert [(d["symbol"], d["action"]) for d in _decisions(home)] == [
        ("AAA", "halt"), ("AAA", "allow"), ("BBB", "allow")]


def test_each_symbol_is_governed_by_the_most_restrictive_of_its_snapshots_in_a_replay(
        tmp_path: Path) -> None:
    home = _workspace(tmp_path, "autonomous")
    day = datetime(2020, 3, 2, 21, tzinfo=UTC)
    _facts(home / "history.jsonl", ("AAA", {"coherence": 0.3}), ("AAA", {}),
           ("BBB", {"price": 50.0}), ts=day)
    (home / "book.yaml").write_text(f'as_of: "{format_utc(day)}"\ncash: 200000\n'
                                    "positions: {}\n", encoding="utf-8")

    proc = fugger(home, "run", "--policies", "policies", "--facts", "history.jsonl",
                  "--portfolio", "book.yaml", "--audit", AUDIT, "--format", "json")

    assert proc.returncode == 0, proc.stderr
    latest = {cid: rows[-1] for cid, rows in _orders(home).items()}
    by_symbol = {(o["symbol"], o["status"], o["rule"]) for o in latest.values()}
    assert ("AAA", "denied", "coherence-break-block") in by_symbol
    assert ("BBB", "filled", None) in by_symbol
    assert all(o["symbol"] != "AAA" or o["status"] == "denied" for o in latest.values())
    assert sorted((d["symbol"], d["action"]) for d in _decisions(home)) == [
        ("AAA", "allow"), ("AAA", "block_new"), ("BBB", "allow")]


def test_a_resume_reads_the_most_restrictive_of_an_evals_snapshots_of_one_symbol(
        tmp_path: Path) -> None:
    home = _workspace(tmp_path, "autonomous", AAA={"drift_score": 0.85})
    _paper_account(home)
    assert step(home)["trading_state"]["state"] == "HALTED"
    facts = _facts(home / "twice.jsonl", ("AAA", {"drift_score": 0.95}), ("AAA", {}))

    evaluated = fugger(home, "eval", "--policies", "policies", "--facts", facts,
                       "--format", "json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert [json.loads(line)["action"] for line in evaluated.stdout.splitlines()] == [
        "halt", "allow"]

    resumed = fugger(home, "resume", "--reason", "the last line is calm")
    assert resumed.returncode == 1
    assert "still fires" in resumed.stderr and "drift-spike-halt (AAA)" in resumed.stderr
    with AuditStore(home / AUDIT) as store:
        assert trading.load(store).state is trading.TradingState.HALTED


# -- 5. what a resume is checked against -------------------------------------------------------

def test_a_resume_is_refused_while_the_halting_symbol_is_older_than_the_rest_of_its_cycle(
        tmp_path: Path) -> None:
    home = _workspace(tmp_path, "autonomous")
    _paper_account(home)
    now = _now()
    with (home / "cycle.jsonl").open("w", encoding="utf-8") as f:
        f.write(json.dumps({"ts": format_utc(now - timedelta(seconds=1)), "symbol": "AAA",
                            **CALM, "drift_score": 0.9}) + "\n")
        f.write(json.dumps({"ts": format_utc(now), "symbol": "BBB", **CALM}) + "\n")
    assert step(home, "cycle.jsonl")["trading_state"]["state"] == "HALTED"

    refused = fugger(home, "resume", "--reason", "BBB looks fine")

    assert refused.returncode == 1
    assert "drift-spike-halt (AAA)" in refused.stderr


def test_only_a_permitted_resume_ends_a_halt_not_an_eval_of_another_symbol(
        tmp_path: Path) -> None:
    home = _workspace(tmp_path, "autonomous", AAA={"drift_score": 0.9})
    _paper_account(home)
    assert step(home)["trading_state"]["state"] == "HALTED"
    _facts(home / "other.jsonl", ("CCC", {}))

    first = fugger(home, "resume", "--reason", "looks fine")
    evaluated = fugger(home, "eval", "--policies", "policies", "--facts", "other.jsonl")
    again = fugger(home, "resume", "--reason", "CCC looks fine")
    alerts = fugger(home, "alerts", "--audit", AUDIT)

    assert evaluated.returncode == 0, evaluated.stderr
    for proc in (first, again):
        assert proc.returncode == 1
        assert "drift-spike-halt (AAA)" in proc.stderr
        assert "resumed" not in proc.stdout
    assert "resumed" not in evaluated.stdout.lower() + alerts.stdout.lower()
    with AuditStore(home / AUDIT) as store:
        assert [r.body["state"] for r in store.iter_records(trading.KIND)] == ["HALTED"]

    # Once AAA itself is decided clear, a named person may resume.
    _facts(home / "calm.jsonl", ("AAA", {}))
    assert step(home, "calm.jsonl")["trading_state"]["state"] == "HALTED"
    resumed = fugger(home, "resume", "--reason", "drift is back under 0.8")
    assert resumed.returncode == 0, resumed.stderr


# -- 2. the clock of a live command ------------------------------------------------------------

def test_live_commands_age_snapshots_against_the_wall_clock(tmp_path: Path) -> None:
    home = _workspace(tmp_path, "autonomous")
    _paper_account(home)
    now = _now()
    _facts(home / "old.jsonl", ("AAA", {}), ("BBB", {"price": 50.0}),
           ts=now - timedelta(days=7 * 365))
    _facts(home / "ahead.jsonl", ("AAA", {}), ts=now + timedelta(days=365))

    traded = step(home, "old.jsonl")
    ahead, replayed = _many(
        home, ["eval", "--policies", "policies", "--facts", "ahead.jsonl", "--format", "json"],
        ["eval", "--policies", "policies", "--facts", "old.jsonl", "--format", "json",
         "--clock", "snapshot"])

    assert {s: (d["action"], d["rule"]) for s, d in traded["decisions"].items()} == {
        "AAA": ("halt", "fact-stale:ts"), "BBB": ("halt", "fact-stale:ts")}
    assert _fills(home) == []
    future = json.loads(ahead.stdout)
    assert (future["action"], future["deciding_rule"]["rule"], future["clock"]) == (
        "halt", "fact-invalid:ts", "wall")
    assert "ahead of the clock" in future["findings"][0]["detail"]
    # The same seven-year-old facts, replayed on their own clock, are as fresh as they were.
    assert [(d["action"], d["clock"]) for d in map(json.loads, replayed.stdout.splitlines())] \
        == [("allow", "snapshot"), ("allow", "snapshot")]
    assert {d["clock"] for d in _decisions(home)} == {"wall", "snapshot"}


def test_an_approval_counts_its_time_to_live_from_when_it_was_queued(tmp_path: Path) -> None:
    home = _workspace(tmp_path)
    _paper_account(home)
    now = _now()
    _facts(home / "recent.jsonl", ("AAA", {}), ts=now - timedelta(minutes=20))
    _facts(home / "ahead.jsonl", ("BBB", {"price": 50.0}), ts=now + timedelta(days=365))

    queued = step(home, "recent.jsonl")
    listed = fugger(home, "approvals", "list", "--format", "json")
    future = step(home, "ahead.jsonl")

    assert [o["status"] for o in queued["orders"]] == ["pending_approval"]
    items = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [i["symbol"] for i in items] == ["AAA"]
    requested = datetime.fromisoformat(items[0]["requested_at"])
    assert requested >= now
    assert datetime.fromisoformat(items[0]["expires_at"]) - requested == timedelta(minutes=15)
    # A snapshot from next year queues nothing a person could approve for a year.
    assert future["decisions"]["BBB"]["rule"] == "fact-invalid:ts"
    assert all(o["symbol"] != "BBB" or o["status"] == "denied" for o in future["orders"])
    pending = fugger(home, "approvals", "list", "--format", "json")
    assert [json.loads(line)["symbol"] for line in pending.stdout.splitlines()] == ["AAA"]


# -- 6. what an approval still covers when its order is sent -----------------------------------

def _approve_all(home: Path, doc: dict[str, Any]) -> dict[str, str]:
    """Approve every order `doc` queued; {symbol: item id}."""
    items = {o["symbol"]: o["client_id"] for o in doc["orders"]
             if o["status"] == "pending_approval"}
    # The person who stepped the cycle requested the orders: another person approves.
    as_ann = {"FUGGER_TOKEN": token_for("ann", home / AUDIT)}
    for proc in run_fugger_many([["approvals", "approve", i, "--reason", "price checked"]
                                 for i in items.values()], cwd=home,
                                envs=[as_ann] * len(items)):
        assert proc.returncode == 0, proc.stderr
    return items


def test_an_approved_order_goes_out_only_near_the_price_approved(tmp_path: Path) -> None:
    home = _workspace(tmp_path)
    _paper_account(home)
    _facts(home / "first.jsonl", ("AAA", {}), ("BBB", {"price": 50.0}))
    items = _approve_all(home, step(home, "first.jsonl"))
    assert set(items) == {"AAA", "BBB"}
    # AAA doubles; BBB moves half a percent, inside the default tolerance of 1%.
    _facts(home / "later.jsonl", ("AAA", {"price": 200.0}), ("BBB", {"price": 50.25}))

    later = step(home, "later.jsonl")

    sent = {o["client_id"]: o for o in later["orders"]}
    assert (sent[items["AAA"]]["status"], sent[items["AAA"]]["rule"]) == (
        "denied", "approval-price-moved")
    assert "approved 100" in sent[items["AAA"]]["reason"]
    assert sent[items["BBB"]]["status"] == "filled"
    assert _fills(home) == [("BBB", "BUY", 50.25)]
    denied = _orders(home)[items["AAA"]][-1]
    assert (denied["status"], denied["rule"], denied["market_price"]) == (
        "denied", "approval-price-moved", 200.0)


def test_an_approved_order_is_not_sent_after_its_approval_expired(tmp_path: Path) -> None:
    home = _workspace(tmp_path)
    _paper_account(home)
    _facts(home / "first.jsonl", ("AAA", {}))
    items = _approve_all(home, step(home, "first.jsonl"))
    # The next cycle comes a day later: its snapshots say so, and the step runs on their clock.
    _facts(home / "tomorrow.jsonl", ("AAA", {}), ts=_now() + timedelta(days=1))

    proc = fugger(home, "step", "--policies", "policies", "--facts", "tomorrow.jsonl",
                  "--format", "json", "--clock", "snapshot")

    assert proc.returncode == 0, proc.stderr
    sent = {o["client_id"]: o for o in json.loads(proc.stdout)["orders"]}
    assert (sent[items["AAA"]]["status"], sent[items["AAA"]]["rule"]) == (
        "denied", "approval-expired")
    assert _fills(home) == []


# -- the policy settings behind them, in process -----------------------------------------------

def _safety(extra: str = "") -> PolicySet:
    return policy_set_from_texts([("safety.yaml", FROZEN_SAFETY.replace(
        "  max_fact_age: 1d\n", f"  max_fact_age: 1d\n{extra}"))])


def test_the_safety_policy_sets_how_far_ahead_of_the_wall_clock_a_snapshot_may_be() -> None:
    ahead = {**CALM, "symbol": "AAA", "ts": format_utc(_now() + timedelta(minutes=1))}
    decided = {}
    for name, ps in (("default", _safety()), ("2m", _safety("  max_clock_skew: 2m\n"))):
        evaluator = SafetyEvaluator(ps)
        try:
            d = evaluator.decide(ahead, clock=WALL)
        finally:
            evaluator.close()
        decided[name] = (d.action.value, d.rule, d.clock)
    assert decided == {"default": ("halt", "fact-invalid:ts", "wall"),
                       "2m": ("allow", None, "wall")}
    with pytest.raises(PolicyError) as refused:
        _safety("  max_clock_skew: soon\n")
    (problem,) = refused.value.problems
    assert "max_clock_skew" in str(problem) and "is not a duration" in str(problem)


def test_the_approval_policy_sets_the_price_tolerance_of_an_approval(tmp_path: Path) -> None:
    approval = FROZEN_APPROVAL.replace("mode: semi_autonomous",
                                       "mode: manual\n  price_tolerance: 0.1")
    ps = policy_set_from_texts([("safety.yaml", FROZEN_SAFETY), ("approval.yaml", approval)])
    now = _now()
    on = Clock(ClockKind.SNAPSHOT, now)
    safety, evaluator = SafetyEvaluator(ps), ApprovalEvaluator(ps)
    broker = PaperBroker(init_account(tmp_path / "paper.db", 1_000_000))
    outcomes = {}
    try:
        with AuditStore(tmp_path / "audit.db") as store:
            gateway = Gateway(store, broker, evaluator,
                              controls=Controls.fresh(OrderPolicyEvaluator(PolicySet(()))))
            for cid, price in (("o-near", 109.0), ("o-far", 111.0)):
                d = safety.decide({**CALM, "symbol": "AAA", "ts": format_utc(now)}, clock=on)
                order = OrderIntent("AAA", "BUY", 10, 100.0, 0)
                queued = gateway.submit(order, d, trading.INITIAL, cid=cid, now=now)
                assert queued.status == "pending_approval"
                approvals.decide(store, cid, outcome="approved", by="ann", now=now,
                                 reason="checked")
                sent = gateway.submit(order, d, trading.INITIAL, cid=cid, now=now,
                                      approved_item=cid, market_price=price)
                outcomes[cid] = (sent.status, sent.rule)
    finally:
        safety.close()
        evaluator.close()
    assert outcomes == {"o-near": ("filled", None),
                        "o-far": ("denied", "approval-price-moved")}
    assert [(o.client_id, o.fill_price) for o in broker.account_summary().orders] == [
        ("o-near", 109.0)]
