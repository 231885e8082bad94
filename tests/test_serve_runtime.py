"""The service's runtime in-process: what a decision is good for once time has passed."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from conftest import write_frozen_policies

from engine.audit.store import AuditStore
from engine.execution import state as trading
from engine.execution.gateway import latest_status
from engine.execution.paper import PaperBroker, init_account
from engine.monitoring.alerting.engine import AlertEngine
from engine.order_messages import OrderIn
from engine.service.runtime import Runtime
from engine.timeutil import format_utc, utc_now

CALM = {"price": 100.0, "volatility": 0.2, "expected_return": 0.05, "drift_score": 0.1,
        "coherence": 0.8, "frs": 0.8, "meta_reliability": 0.8}


def test_an_order_never_rests_on_a_decision_older_than_the_max_fact_age(tmp_path: Path) -> None:
    policies = write_frozen_policies(tmp_path / "policies")  # max_fact_age: 1d
    init_account(str(tmp_path / "paper.db"), 100_000.0, {}, None)
    clock = {"now": utc_now()}

    def now() -> datetime:
        return clock["now"]

    with AuditStore(tmp_path / "audit.db") as store:
        runtime = Runtime(str(policies), store, PaperBroker(str(tmp_path / "paper.db")),
                          str(tmp_path / "paper.db"), now=now)
        [d] = runtime.decide([{"ts": format_utc(utc_now()), "symbol": "AAA", **CALM}])
        assert d.action.value == "allow"
        order = OrderIn("AAA", "BUY", 1, 100.0)
        fresh = runtime.orders([OrderIn("AAA", "BUY", 1, 100.0, "fresh")],
                               requester="tim")
        assert fresh[0].status == "filled"
        clock["now"] = utc_now() + timedelta(days=1, seconds=1)
        [stale] = runtime.orders([order], requester="tim")
        assert (stale.status, stale.rule) == ("denied", "decision-missing")


def test_a_decide_is_the_one_cycle_sends_approved_orders_and_alerts_a_halt(
        tmp_path: Path) -> None:
    """POST /v1/decide runs engine/cycle: an approved order goes out with the next decision of
    its symbol (and waits through decisions of other symbols), a halt is latched, alerted and
    cancels what is open."""
    policies = write_frozen_policies(tmp_path / "policies")
    init_account(str(tmp_path / "paper.db"), 1_000_000.0, {}, None)

    def snap(symbol: str, **changes: float) -> dict[str, object]:
        return {"ts": format_utc(utc_now()), "symbol": symbol, **CALM, **changes}

    with AuditStore(tmp_path / "audit.db") as store:
        broker = PaperBroker(str(tmp_path / "paper.db"))
        alerts = AlertEngine(store, None, "live")
        runtime = Runtime(str(policies), store, broker, str(tmp_path / "paper.db"),
                          alerts=alerts)
        runtime.decide([snap("AAA")], requester="tim")
        [held] = runtime.orders([OrderIn("AAA", "BUY", 3000, 100.0, "big")],
                                requester="tim")
        assert held.status == "pending_approval"
        runtime.decide_approval("big", "approved", "ann", "sized on purpose")
        runtime.decide([snap("BBB")], requester="tim")
        assert broker.positions().get("AAA", 0) == 0  # no price for AAA in that cycle
        runtime.decide([snap("AAA")], requester="tim")
        assert broker.positions()["AAA"] == 3000
        assert latest_status(store, "big") == "filled"

        [halt] = runtime.decide([snap("AAA", drift_score=0.95)], requester="tim")
        assert halt.action.value == "halt"
        assert trading.load(store).state is trading.TradingState.HALTED
        halted = [r.body for r in store.iter_records("alert")
                  if "drift-spike-halt" in json.dumps(r.body)]
        assert halted, [r.body for r in store.iter_records("alert")]
        alerts.close()
