"""Exactly once across a crash: a real process dies in the middle of a cycle, the real CLI
restarts on the same files, and the paper account and the audit log still agree."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI_HANG_GUARD_S, REPO_ROOT, run_fugger_many

from engine.audit.store import AuditStore
from engine.cycle import CompiledSet, run_cycle
from engine.execution import approvals
from engine.execution.approval_policy import ApprovalEvaluator
from engine.execution.broker import (
    Broker,
    BrokerError,
    BrokerOrder,
    OrderRequest,
    OrderStatus,
)
from engine.execution.gate import OrderIntent
from engine.execution.gateway import MAX_TRIES, ORDER, Controls, Gateway, latest_status
from engine.execution.order_policy import OrderPolicyEvaluator
from engine.execution.paper import AccountSummary, PaperBroker, init_account
from engine.execution.state import INITIAL
from engine.policy.loader import load_policy_set
from engine.policy.model import PolicySet
from engine.timeutil import format_utc

# One cycle of the real engine on real files. The broker's submit is wrapped so the process
# dies at the chosen moment: `after` once the paper account holds the fill but before the
# audit store records it; `before` once the order is recorded as submitting but before the
# broker has seen it.
CHILD = """
import os, signal, sys
from engine.audit.store import AuditStore
from engine.cycle import CompiledSet, run_cycle
from engine.execution.paper import PaperBroker
from engine.factsource import read_snapshots
from engine.policy.loader import load_policy_set

policies, facts, audit, paper, when = sys.argv[1:6]


class DiesOnSubmit:
    def __init__(self, inner):
        self.inner = inner

    def submit(self, order):
        if when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        placed = self.inner.submit(order)
        os.kill(os.getpid(), signal.SIGKILL)
        return placed

    def __getattr__(self, name):
        return getattr(self.inner, name)


ps = load_policy_set([policies])
compiled = CompiledSet(ps)
with AuditStore(audit) as store:
    store.record_activation(ps)
    run_cycle(compiled, store, DiesOnSubmit(PaperBroker(paper)),
              [s.data for s in read_snapshots(facts)])
print("the cycle ended without the broker being called")
"""


def _autonomous_policies(target: Path) -> Path:
    shutil.copytree(REPO_ROOT / "policies", target)
    approval = target / "approval.yaml"
    text = approval.read_text(encoding="utf-8")
    assert "mode: semi_autonomous" in text
    approval.write_text(text.replace("mode: semi_autonomous", "mode: autonomous"),
                        encoding="utf-8")
    return target


def _facts(path: Path) -> Path:
    now = datetime.now(UTC).replace(microsecond=0)
    rows = [
        {"symbol": "AAA", "price": 100.0, "volatility": 0.2, "expected_return": 0.05},
        {"symbol": "BBB", "price": 50.0, "volatility": 0.25, "expected_return": 0.04},
    ]
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({"ts": format_utc(now), **r, "drift_score": 0.1,
                                "coherence": 0.8, "frs": 0.8, "meta_reliability": 0.8}) + "\n")
    return path


def _order_records(store: AuditStore) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in store.iter_records(ORDER):
        out[r.ref].append(r.body)
    return out


def _assert_reconciled(summary: AccountSummary, audit: Path) -> None:
    """One broker order per client id, positions equal to the fills, and the audit log's final
    status of every order equal to the broker's."""
    ids = [o.client_id for o in summary.orders]
    assert len(ids) == len(set(ids))
    held: dict[str, int] = defaultdict(int)
    for o in summary.orders:
        if o.status is OrderStatus.FILLED:
            held[o.symbol] += o.shares if o.side.value == "BUY" else -o.shares
    assert summary.positions == {s: n for s, n in held.items() if n}
    with AuditStore(audit) as store:
        records = _order_records(store)
    final = {cid: bodies[-1]["status"] for cid, bodies in records.items()}
    assert "submitting" not in final.values(), final
    at_broker = {o.client_id: o.status.value for o in summary.orders}
    for cid, status in at_broker.items():
        assert final.get(cid) == status, (cid, final.get(cid), status)
    for cid, status in final.items():
        if status in ("filled", "sent"):
            assert cid in at_broker, cid


@pytest.fixture
def crashed(tmp_path: Path) -> dict[str, dict[str, Path]]:
    """Two real processes, each killed in its cycle: one after the broker filled the order,
    one before the broker saw it."""
    setups: dict[str, dict[str, Path]] = {}
    procs = []
    script = tmp_path / "cycle_then_die.py"
    script.write_text(CHILD, encoding="utf-8")
    for when in ("after", "before"):
        d = tmp_path / when
        d.mkdir()
        files = {"dir": d, "policies": _autonomous_policies(d / "policies"),
                 "facts": _facts(d / "facts.jsonl"), "audit": d / "audit.db",
                 "paper": init_account(d / "paper.db", 200_000)}
        setups[when] = files
        procs.append(subprocess.Popen(
            [sys.executable, str(script), str(files["policies"]), str(files["facts"]),
             str(files["audit"]), str(files["paper"]), when],
            cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        out, err = p.communicate(timeout=CLI_HANG_GUARD_S)
        assert p.returncode == -signal.SIGKILL, (p.returncode, out, err)
    return setups


def _restart(files: dict[str, Path]) -> list[str]:
    return ["step", "--policies", str(files["policies"]), "--facts", str(files["facts"]),
            "--audit", str(files["audit"]), "--broker", str(files["paper"]), "--format",
            "json"]


def test_a_restart_settles_the_crashed_order_and_sends_nothing_twice(
        crashed: dict[str, dict[str, Path]]) -> None:
    after, before = crashed["after"], crashed["before"]

    # The state the crash left: the fill is at the broker, the audit log says submitting.
    lost = PaperBroker(after["paper"]).account_summary().orders
    assert len(lost) == 1 and lost[0].status is OrderStatus.FILLED
    killed = lost[0]
    with AuditStore(after["audit"]) as store:
        assert latest_status(store, killed.client_id) == "submitting"
    assert PaperBroker(before["paper"]).account_summary().orders == ()
    with AuditStore(before["audit"]) as store:
        unsent = [cid for cid, bodies in _order_records(store).items()
                  if bodies[-1]["status"] == "submitting"]
    assert len(unsent) == 1

    proc_after, proc_before = run_fugger_many([_restart(after), _restart(before)])
    assert proc_after.returncode == 0, proc_after.stderr
    assert proc_before.returncode == 0, proc_before.stderr

    doc = json.loads(proc_after.stdout)
    assert doc["settled_after_restart"] == [{"client_id": killed.client_id,
                                             "status": "filled"}]
    assert killed.client_id not in [o["client_id"] for o in doc["orders"]]
    summary = PaperBroker(after["paper"]).account_summary()
    assert summary.orders[0] == killed
    # Planned afresh from the broker's book: the filled symbol is not bought a second time.
    again = [o for o in summary.orders[1:] if o.symbol == killed.symbol and o.side == killed.side]
    assert sum(o.shares for o in again) < killed.shares / 2, again
    _assert_reconciled(summary, after["audit"])

    doc = json.loads(proc_before.stdout)
    assert doc["settled_after_restart"] == [{"client_id": unsent[0], "status": "failed"}]
    summary = PaperBroker(before["paper"]).account_summary()
    assert unsent[0] not in [o.client_id for o in summary.orders]
    bought: dict[tuple[str, str], int] = defaultdict(int)
    for o in summary.orders:
        bought[(o.symbol, o.side.value)] += 1
    assert bought and all(n == 1 for n in bought.values()), bought
    _assert_reconciled(summary, before["audit"])


class _TimesOutAfterPlacing:
    """The paper broker behind a link that loses its first answer: the order is placed, the
    caller hears a timeout."""

    def __init__(self, inner: PaperBroker) -> None:
        self.inner = inner
        self.calls = 0

    def submit(self, order: OrderRequest) -> BrokerOrder:
        self.calls += 1
        placed = self.inner.submit(order)
        if self.calls == 1:
            raise BrokerError("timed out waiting for the broker's answer")
        return placed

    def cancel(self, client_id: str) -> BrokerOrder:
        return self.inner.cancel(client_id)

    def order(self, client_id: str) -> BrokerOrder | None:
        return self.inner.order(client_id)

    def open_orders(self) -> list[BrokerOrder]:
        return self.inner.open_orders()

    def positions(self) -> dict[str, int]:
        return self.inner.positions()

    def cash(self) -> float:
        return self.inner.cash()


class _AlwaysDown:
    """A broker whose every submit fails with an unknown outcome."""

    def __init__(self) -> None:
        self.submits: list[str] = []

    def submit(self, order: OrderRequest) -> BrokerOrder:
        self.submits.append(order.client_id)
        raise BrokerError("connection refused")

    def cancel(self, client_id: str) -> BrokerOrder:
        raise BrokerError("connection refused")

    def order(self, client_id: str) -> BrokerOrder | None:
        return None

    def open_orders(self) -> list[BrokerOrder]:
        return []

    def positions(self) -> dict[str, int]:
        return {}

    def cash(self) -> float:
        return 100_000.0


@pytest.fixture(scope="module")
def autonomous(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = _autonomous_policies(tmp_path_factory.mktemp("policies") / "policies")
    ev = ApprovalEvaluator(load_policy_set([str(folder)]))
    yield ev
    ev.close()


def _allow_decision(symbol: str) -> Any:
    from engine.evaluator import SafetyEvaluator
    ps = load_policy_set([str(REPO_ROOT / "policies" / "safety.yaml")])
    ev = SafetyEvaluator(ps)
    try:
        return ev.decide({"ts": format_utc(datetime.now(UTC)), "symbol": symbol, "price": 100.0,
                          "volatility": 0.2, "expected_return": 0.05, "drift_score": 0.1,
                          "coherence": 0.8, "frs": 0.8, "meta_reliability": 0.8})
    finally:
        ev.close()


def test_a_retry_of_the_same_client_id_never_creates_a_second_order(
        tmp_path: Path, autonomous: ApprovalEvaluator) -> None:
    paper = PaperBroker(init_account(tmp_path / "paper.db", 100_000))
    flaky = _TimesOutAfterPlacing(paper)
    assert isinstance(flaky, Broker)
    order = OrderIntent("AAA", "BUY", 10, 100.0, 0)
    decision = _allow_decision("AAA")
    sleeps: list[float] = []
    now = datetime.now(UTC)
    with AuditStore(tmp_path / "audit.db") as store:
        gw = Gateway(store, flaky, autonomous, retry_sleep=sleeps.append,
                     controls=Controls.fresh(OrderPolicyEvaluator(PolicySet(()))))
        first = gw.submit(order, decision, INITIAL, cid="o-1", now=now)
        assert first.status == "filled" and flaky.calls == 2 and len(sleeps) == 1
        # The same order again (a re-run, a second worker): the broker's answer is the first.
        second = gw.submit(order, decision, INITIAL, cid="o-1", now=now)
        assert second.status == "filled"
        assert second.broker_order == first.broker_order
        assert latest_status(store, "o-1") == "filled"
    summary = paper.account_summary()
    assert [o.client_id for o in summary.orders] == ["o-1"]
    assert summary.positions == {"AAA": 10}
    assert summary.cash == 100_000 - 10 * 100.0


def test_a_broker_that_keeps_failing_gives_failed_after_bounded_tries(
        tmp_path: Path, autonomous: ApprovalEvaluator) -> None:
    broker = _AlwaysDown()
    assert isinstance(broker, Broker)
    errors: list[tuple[str, str]] = []
    sleeps: list[float] = []
    with AuditStore(tmp_path / "audit.db") as store:
        gw = Gateway(store, broker, autonomous, retry_sleep=sleeps.append,
                     on_broker_error=lambda cid, msg: errors.append((cid, msg)),
                     controls=Controls.fresh(OrderPolicyEvaluator(PolicySet(()))))
        out = gw.submit(OrderIntent("AAA", "BUY", 10, 100.0, 0), _allow_decision("AAA"),
                        INITIAL, cid="o-1", now=datetime.now(UTC))
        assert (out.status, out.rule) == ("failed", "broker-error")
        assert "connection refused" in out.reason
        bodies = [r.body for r in store.find("o-1") if r.kind == ORDER]
    assert 1 < MAX_TRIES <= 5
    assert broker.submits == ["o-1"] * MAX_TRIES
    assert len(sleeps) == MAX_TRIES - 1
    assert errors == [("o-1", "connection refused")]
    assert [b["status"] for b in bodies] == ["submitting", "failed"]
    assert bodies[-1]["rule"] == "broker-error" and bodies[-1]["tries"] == MAX_TRIES


# -- nothing twice across cycles -----------------------------------------------------------

@pytest.fixture(scope="module")
def cycles(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = _autonomous_policies(tmp_path_factory.mktemp("cycles") / "policies")
    made = {"autonomous": CompiledSet(load_policy_set([str(folder)])),
            "semi_autonomous": CompiledSet(load_policy_set([str(REPO_ROOT / "policies")]))}
    yield made
    for c in made.values():
        c.close()


def _aaa(minute: int) -> list[dict[str, Any]]:
    ts = datetime(2025, 3, 3, 15, minute, tzinfo=UTC)
    return [{"ts": format_utc(ts), "symbol": "AAA", "price": 100.0, "volatility": 0.2,
             "expected_return": 0.05, "drift_score": 0.1, "coherence": 0.8, "frs": 0.8,
             "meta_reliability": 0.8}]


def test_an_order_still_open_at_the_broker_is_not_sent_again(
        tmp_path: Path, cycles: dict[str, CompiledSet]) -> None:
    # A broker that fills later (a real market): the next cycle must see the order in flight.
    paper = PaperBroker(init_account(tmp_path / "paper.db", 200_000), fill_on_submit=False)
    with AuditStore(tmp_path / "audit.db") as store:
        first = run_cycle(cycles["autonomous"], store, paper, _aaa(0))
        assert [(o.order.side, o.status) for o in first.outcomes] == [("BUY", "sent")]
        run_cycle(cycles["autonomous"], store, paper, _aaa(1))
    paper.fill_open({"AAA": 100.0})
    buys = [o for o in paper.account_summary().orders if o.side.value == "BUY"]
    assert len(buys) == 1, [(o.client_id, o.shares, o.status.value) for o in buys]
    assert paper.positions() == {"AAA": first.outcomes[0].order.shares}


def test_an_order_waiting_for_approval_is_not_queued_again_by_the_next_cycle(
        tmp_path: Path, cycles: dict[str, CompiledSet]) -> None:
    paper = PaperBroker(init_account(tmp_path / "paper.db", 200_000))
    semi = cycles["semi_autonomous"]
    with AuditStore(tmp_path / "audit.db") as store:
        first = run_cycle(semi, store, paper, _aaa(0))
        assert [(o.status, o.rule) for o in first.outcomes] == [("pending_approval",
                                                                 "new-symbol-approval")]
        run_cycle(semi, store, paper, _aaa(1))
        # A person approves what the queue shows; the next cycle sends it.
        for item in approvals.pending(store):
            approvals.decide(store, item.item_id, outcome="approved", by="ann",
                             now=datetime(2025, 3, 3, 15, 2, tzinfo=UTC), reason="checked")
        run_cycle(semi, store, paper, _aaa(3))
    buys = [o for o in paper.account_summary().orders if o.side.value == "BUY"]
    assert len(buys) == 1, [(o.client_id, o.shares, o.status.value) for o in buys]
    assert paper.positions() == {"AAA": first.outcomes[0].order.shares}
