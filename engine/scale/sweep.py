"""A sweep: one whole replay per candidate policy set, side by side, on one process or spread
over a Dask cluster (one replay per task: the sets are independent).

Each replay runs in a scratch audit store and paper account of its own, deleted when its
figures are read: a sweep trades nothing and activates nothing in a real store. The first set
is the live one; each row also counts the decisions that would change against it (the same
count `fugger diff --facts` gives, checked against durable-rules on every snapshot).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.policy.loader import policy_set_from_texts
from engine.policy.model import PolicySet
from engine.scale.cluster import sources

if TYPE_CHECKING:
    from distributed import Client

Sources = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class SweepSettings:
    """What every replay of a sweep shares (as `fugger run` takes it)."""

    facts: str
    portfolio: str
    start: str | None = None
    end: str | None = None
    approve_rules: frozenset[str] = frozenset()
    resume_after: int | None = 5
    slippage_bps: float = 5.0
    commission_per_share: float = 0.0


@dataclass(frozen=True)
class SweepRow:
    label: str
    policy_hash: str
    days: int
    total_return: float | None
    max_drawdown: float | None
    orders: int
    orders_denied: int
    halted_days: int
    halt_decisions: int
    #: Snapshots whose action or deciding rule differs from the live set's, of `compared`.
    decisions_changed: int
    compared: int
    #: Wall time of this replay on its worker (not part of the comparison of two sweeps).
    seconds: float

    def figures(self) -> dict[str, Any]:
        """Everything but the time: what two runs of one sweep must agree on."""
        out = self.to_json()
        del out["seconds"]
        return out

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "policy_hash": self.policy_hash, "days": self.days,
                "total_return": self.total_return, "max_drawdown": self.max_drawdown,
                "orders": self.orders, "orders_denied": self.orders_denied,
                "halted_days": self.halted_days, "halt_decisions": self.halt_decisions,
                "decisions_changed": self.decisions_changed, "compared": self.compared,
                "seconds": round(self.seconds, 2)}


def replay_one(label: str, srcs: Sources, live: Sources, settings: SweepSettings) -> SweepRow:
    """One candidate's replay and its figures (runs on a worker, or here)."""
    # Imported here: a worker that only decides never loads the replay.
    from engine.audit.store import AuditStore
    from engine.cycle import CompiledSet
    from engine.factsource import FactsInput
    from engine.history import History
    from engine.monitoring.summary.build import summarize
    from engine.portfolio.book import load_book
    from engine.replay import ApprovalRule, Replay, ReplayConfig, ResumeRule
    from engine.tooling.diff import replay as diff_replay

    t0 = time.perf_counter()
    ps = policy_set_from_texts(srcs)
    book = load_book(settings.portfolio)
    history = History(settings.start, settings.end)
    config = ReplayConfig(
        facts_file=settings.facts, portfolio_file=settings.portfolio, started_by="sweep",
        approval=ApprovalRule(settings.approve_rules), resume=ResumeRule(settings.resume_after),
        slippage_bps=settings.slippage_bps,
        commission_per_share=settings.commission_per_share)
    with tempfile.TemporaryDirectory(prefix="fugger-sweep-") as tmp:
        store = AuditStore(Path(tmp) / "audit.db")
        # The facts are read as a stream, twice (the replay, then the count of changed
        # decisions), so a worker holds one day at a time.
        try:
            with FactsInput(settings.facts) as source:
                source.check(history.check)
                replay = Replay(store, CompiledSet(ps), book, config,
                                run_dir=Path(tmp) / "runs")
                run_id = replay.run(history.days(s.data for s in source),
                                    n_days=history.days_in_range,
                                    symbols=sorted(history.symbols))
            summary = summarize(store, run_id)
        finally:
            store.close()
    in_range = History(settings.start, settings.end)
    with FactsInput(settings.facts) as source:
        source.check(in_range.check)
        changed = diff_replay(policy_set_from_texts(live), ps,
                              (("", s) for _, snaps in in_range.days(x.data for x in source)
                               for s in snaps), examples=0)
    return SweepRow(
        label=label, policy_hash=ps.hash, days=summary.days,
        total_return=summary.book.total_return, max_drawdown=summary.book.max_drawdown,
        orders=summary.orders, orders_denied=dict(summary.orders_by_status).get("denied", 0),
        halted_days=dict(summary.days_by_trading_state).get("HALTED", 0),
        halt_decisions=dict(summary.symbol_days_by_action).get("halt", 0),
        decisions_changed=changed.changed, compared=changed.compared,
        seconds=time.perf_counter() - t0)


def sweep(sets: Sequence[tuple[str, PolicySet]], settings: SweepSettings,
          client: Client | None = None) -> list[SweepRow]:
    """A row per set, in the order given; the first set is the live one. With a client, one
    replay per task on the cluster; the rows are the same."""
    live = sources(sets[0][1])
    if client is None:
        return [replay_one(label, sources(ps), live, settings) for label, ps in sets]
    futures = client.map(replay_one, [label for label, _ in sets],
                         [sources(ps) for _, ps in sets], [live] * len(sets),
                         [settings] * len(sets), pure=False)
    rows: list[SweepRow] = client.gather(futures)
    return rows
