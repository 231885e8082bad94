"""The service's runtime in-process: what a decision is good for once time has passed."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from conftest import write_frozen_policies

from engine.audit.store import AuditStore
from engine.execution.paper import PaperBroker, init_account
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
