"""Group commit in the service: the records of requests that arrive together are committed in
one durable transaction, each request answered only once its records are on disk, and what an
order at the broker follows is committed before the broker acts."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import write_frozen_policies
from serve_fixture import serving

from engine.audit.store import AuditStore
from engine.execution.broker import BrokerOrder, OrderRequest
from engine.execution.paper import PaperBroker, init_account
from engine.order_messages import OrderIn
from engine.service.group_commit import GroupCommit
from engine.service.runtime import Runtime
from engine.timeutil import format_utc, utc_now

CALM = {"price": 100.0, "volatility": 0.2, "expected_return": 0.05, "drift_score": 0.1,
        "coherence": 0.8, "frs": 0.8, "meta_reliability": 0.8}


def snap(symbol: str) -> dict[str, Any]:
    return {"ts": format_utc(utc_now()), "symbol": symbol, **CALM}


def committed(path: Path, ref: str) -> list[dict[str, Any]]:
    """The bodies of `ref` another connection sees: only those of committed transactions."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as other:
        return [json.loads(b) for (b,) in other.execute(
            "SELECT body FROM records WHERE ref = ? ORDER BY seq", (ref,))]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AuditStore]:
    with AuditStore(tmp_path / "audit.db") as s:
        yield s


def until(condition: Callable[[], bool]) -> None:
    """Wait for `condition` (a hang guard, not a speed requirement)."""
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.002)


def held_writer(store: AuditStore) -> tuple[GroupCommit, threading.Event]:
    """A writer busy with a first piece of work until the event is set, so that the work
    handed in meanwhile gathers into the next batch."""
    writer = GroupCommit(store, threading.RLock())
    started, release = threading.Event(), threading.Event()

    def first() -> None:
        started.set()
        release.wait()
    threading.Thread(target=writer.run, args=(first,), daemon=True).start()
    started.wait()
    return writer, release


def test_work_arriving_together_is_one_commit_and_answered_after_it(
        store: AuditStore) -> None:
    writer, release = held_writer(store)
    seen_on_return: dict[str, int] = {}

    def request(n: int) -> None:
        ref = f"r{n}"
        writer.run(lambda: store.append("note", ref, {"n": n}))
        seen_on_return[ref] = len(committed(store.path, ref))

    before = store.commits
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(request, n) for n in range(8)]
        until(lambda: writer.waiting() == 8)
        release.set()
        for f in futures:
            f.result()
    writer.close()
    # The busy batch, then the eight that gathered meanwhile: two fsyncs, not nine.
    assert store.commits - before == 2
    assert seen_on_return == {f"r{n}": 1 for n in range(8)}


def test_a_failing_request_keeps_its_records_and_spoils_no_other(store: AuditStore) -> None:
    writer, release = held_writer(store)

    def refused() -> None:
        store.append("access", "x", {"allowed": False})
        raise PermissionError("not yours")

    with ThreadPoolExecutor(2) as pool:
        bad = pool.submit(writer.run, refused)
        good = pool.submit(writer.run, lambda: store.append("note", "y", {}).seq)
        until(lambda: writer.waiting() == 2)
        release.set()
        with pytest.raises(PermissionError):
            bad.result()
        assert good.result() > 0
    writer.close()
    assert committed(store.path, "x") and committed(store.path, "y")


def test_inside_a_durable_transaction_what_precedes_an_effect_is_committed_first(
        store: AuditStore) -> None:
    with store.transaction(durable=True):
        store.append("order", "o-1", {"status": "submitting"})
        assert committed(store.path, "o-1") == []
        store.durable_before_effect()
        assert [b["status"] for b in committed(store.path, "o-1")] == ["submitting"]
        store.append("order", "o-1", {"status": "filled"})
    with store.transaction(durable=False):  # a replay: redone from its inputs, not synced
        store.append("order", "o-2", {"status": "submitting"})
        store.durable_before_effect()
        assert committed(store.path, "o-2") == []
    assert len(committed(store.path, "o-1")) == 2


class WatchingBroker(PaperBroker):
    """The real paper account, noting what the audit store held when each order arrived."""

    audit: Path
    seen: list[list[str]]

    def submit(self, order: OrderRequest) -> BrokerOrder:
        self.seen.append([b["status"] for b in committed(self.audit, order.client_id)])
        return super().submit(order)


def test_the_service_keeps_one_broker_connection_and_commits_before_the_broker_acts(
        tmp_path: Path) -> None:
    policies = write_frozen_policies(tmp_path / "policies")
    init_account(str(tmp_path / "paper.db"), 1_000_000.0, {}, None)
    broker = WatchingBroker(str(tmp_path / "paper.db"))
    broker.audit, broker.seen = tmp_path / "audit.db", []
    opened = broker.connections_opened  # checking the account file on construction
    with AuditStore(tmp_path / "audit.db") as store:
        runtime = Runtime(str(policies), store, broker, str(tmp_path / "paper.db"))
        for _ in range(3):
            runtime.decide([snap("AAA"), snap("BBB")], requester="tim")
        [out] = runtime.orders([OrderIn("AAA", "BUY", 5, 100.0, "bot-1")], requester="tim")
        runtime.close()
    assert out.status == "filled"
    assert broker.seen == [["submitting"]]
    assert broker.connections_opened == opened + 1


def _commits(c: httpx.Client) -> float:
    found = re.search(r"^fugger_audit_commits (\S+)$", c.get("/metrics").text, re.M)
    assert found is not None
    return float(found.group(1))


def test_a_decide_is_one_commit_and_nothing_answered_is_lost_to_sigkill(
        tmp_path: Path) -> None:
    """The caller's authorisation and the cycle's records are one transaction; a server
    killed mid-stream keeps every decision it answered with."""
    with serving(tmp_path / "home") as server:
        with server.client("tim") as c:
            before = _commits(c)
            [d] = c.post("/v1/decide", json=snap("ONE")).json()["decisions"]
            assert _commits(c) == before + 1
        with AuditStore(server.audit) as store:
            [decision] = store.find(d["decision_id"])
            allowed = store.find("decide")[-1]
        assert (allowed.body["by"], allowed.body["allowed"]) == ("tim", True)
        assert allowed.seq == decision.seq - 1

        answered: list[str] = []
        stop = threading.Event()

        def bot(n: int) -> None:
            with server.client("tim") as c:
                while not stop.is_set():
                    try:
                        r = c.post("/v1/decide", json=snap(f"S{n}"))
                    except httpx.TransportError:
                        return
                    if r.status_code == 200:
                        answered.extend(x["decision_id"] for x in r.json()["decisions"])

        with ThreadPoolExecutor(4) as pool:
            for n in range(4):
                pool.submit(bot, n)
            until(lambda: len(answered) >= 40)
            server.proc.send_signal(signal.SIGKILL)
            server.proc.communicate()
            stop.set()
    with AuditStore(server.audit) as store:
        assert store.verify().ok
        recorded = {r.ref for r in store.iter_records("decision")}
    missing = [i for i in answered if i not in recorded]
    assert not missing, json.dumps(missing[:5])
