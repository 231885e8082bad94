"""The main job: replay a history of fact snapshots, one cycle per day, through the rails,
rotation, the gate and the paper broker, with monitoring and a record of every step.

A replay has no person at the keyboard, so approvals and resumes follow declared rules,
stated in the run's first record and in its summary; the same inputs give the same run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from engine.access.model import run_service
from engine.actions import Action
from engine.audit.checkpoint import Checkpoint
from engine.audit.store import AuditStore
from engine.audit.witness import Witness
from engine.clock import SNAPSHOT
from engine.cycle import CompiledSet, CycleResult, run_cycle
from engine.execution import approvals
from engine.execution import state as trading
from engine.execution.activity import Activity
from engine.execution.approvals import ApprovalItem
from engine.execution.gateway import reconcile
from engine.execution.paper import PaperBroker, init_account
from engine.ids import new_id
from engine.monitoring.alerting.engine import AlertEngine
from engine.monitoring.metrics import Metrics
from engine.monitoring.sinks import Sink
from engine.policy.model import PolicySet
from engine.portfolio.book import Book
from engine.timeutil import format_utc, parse_utc, utc_now

SAFETY_FACTS = ("drift_score", "volatility", "coherence", "frs", "meta_reliability")
#: Replayed days committed together, and between two such groups the policy files are checked
#: for a change. A commit costs more than a day's work, and history can be replayed again, so
#: days are committed by the trading month: a replay killed mid-run leaves whole days, at most
#: this many fewer than it had decided.
DAYS_PER_COMMIT = 20


@dataclass(frozen=True)
class ApprovalRule:
    """Which held orders the replay's approver approves in the cycle that queued them."""

    approve_rules: frozenset[str]

    def describe(self) -> str:
        if not self.approve_rules:
            return "no order is approved: every order that waits for a person expires"
        return (f"orders held by {', '.join(sorted(self.approve_rules))} are approved by "
                "'replay-approver' in the cycle that queued them, then checked against the "
                "rails again before they are sent; every other held order waits and expires")

    def __call__(self, item: ApprovalItem) -> str | None:
        return "approved" if item.rule in self.approve_rules else None


@dataclass(frozen=True)
class ResumeRule:
    """When the replay's operator lifts a latched halt."""

    after_days: int | None

    def describe(self) -> str:
        if self.after_days is None:
            return "a latched halt is never resumed: the rest of the replay stays halted"
        return (f"a latched halt is resumed by 'replay-operator' once no halting rule has "
                f"fired for {self.after_days} day(s); a reduce-only latch is re-enabled "
                f"{self.after_days} day(s) after it was set")


@dataclass(frozen=True)
class ReplayConfig:
    facts_file: str
    portfolio_file: str
    approval: ApprovalRule
    resume: ResumeRule
    #: The authenticated person who started the run and activated its first policy set.
    started_by: str
    slippage_bps: float = 0.0
    commission_per_share: float = 0.0
    broker_path: str | None = None


@dataclass
class ReplayProgress:
    day: int = 0
    days: int = 0
    ts: str = ""


class Replay:
    def __init__(self, store: AuditStore, compiled: CompiledSet, book: Book,
                 config: ReplayConfig, *, run_dir: Path, sinks: Sequence[Sink] = (),
                 poll_policies: Callable[[], tuple[CompiledSet | None, list[str]]] | None = None,
                 shadow: Any = None, metrics_points: int = 10_000,
                 witness: Witness | None = None) -> None:
        self.store = store
        self.compiled = compiled
        self.policy_set: PolicySet = compiled.policy_set
        self.book = book
        self.config = config
        self.run_id = new_id()
        run_dir.mkdir(parents=True, exist_ok=True)
        broker_path = Path(config.broker_path or run_dir / f"paper-{self.run_id}.db")
        init_account(broker_path, book.cash, dict(book.positions), None, overwrite=True)
        self.broker = PaperBroker(broker_path, slippage_bps=config.slippage_bps,
                                  commission_per_share=config.commission_per_share)
        metrics = Metrics(max_points=metrics_points)
        settings = self.policy_set.alert_settings
        self.alerts = (AlertEngine.with_sinks(store, list(sinks), self.run_id, metrics=metrics,
                                              settings=settings)
                       if sinks else AlertEngine(store, None, self.run_id, metrics=metrics,
                                                 settings=settings))
        self.queue = approvals.ApprovalQueue(store)
        self._poll = poll_policies
        self.witness = witness
        if witness is not None:
            witness.on_checkpoint = self._checkpointed
        self.shadow = shadow
        self._bh_shares: dict[str, float] | None = None
        self._last_prices: dict[str, float] = {}
        self._last_rebalance: str | None = book.last_rebalance
        self._last_halt_fire: datetime | None = None
        self._latest = trading.LatestVerdicts()
        self.activity = Activity.fresh()

    def run(self, days: Iterable[tuple[str, Sequence[Mapping[str, Any]]]], *, n_days: int,
            symbols: Sequence[str],
            progress: Callable[[ReplayProgress], None] | None = None) -> str:
        """Replay `days` (n_days of them, in time order, as `engine.history` reads them), one
        at a time: memory holds one day, whatever the length of the history."""
        self.store.record_activation(self.policy_set, actor=self.config.started_by,
                                     scope="run", run_id=self.run_id)
        self.store.append("run_started", self.run_id, {
            "run_id": self.run_id, "started_at": format_utc(utc_now()),
            "policies": self.policy_set.versions(), "policy_hash": self.policy_set.hash,
            "facts_file": self.config.facts_file, "portfolio_file": self.config.portfolio_file,
            "approval_rule": self.config.approval.describe(),
            "resume_rule": self.config.resume.describe(), "symbols": sorted(symbols),
            "initial_cash": self.book.cash, "initial_positions": dict(self.book.positions),
            "slippage_bps": self.config.slippage_bps,
            "commission_per_share": self.config.commission_per_share,
            "started_by": self.config.started_by, "summary": f"replay of {n_days} days"})
        reconcile(self.store, self.broker)
        tick = ReplayProgress(days=n_days)
        todo = iter(days)
        try:
            with self.broker.session():
                while self._days(todo, tick, progress):
                    if self.witness is not None:  # after the days are committed
                        self.witness.maybe(utc_now())
        finally:
            snap = self.alerts.metrics.snapshot()
            self.store.append("run_finished", self.run_id, {
                "run_id": self.run_id, "finished_at": format_utc(utc_now()),
                "days": tick.day, "summary": f"{tick.day} of {n_days} days replayed",
                "metrics": {"counters": dict(snap.counters), "gauges": dict(snap.gauges)}})
            if self.witness is not None:
                self.witness.now(utc_now())  # the run's last record is witnessed too
            self.alerts.close()
            self.compiled.close()
        return self.run_id

    def _days(self, todo: Iterator[tuple[str, Sequence[Mapping[str, Any]]]],
              tick: ReplayProgress, progress: Callable[[ReplayProgress], None] | None) -> bool:
        """Up to DAYS_PER_COMMIT replayed days (fewer when a checkpoint is due): their broker
        calls and their records each commit in one transaction (the records first, so the
        store knows of every order the account holds). History can be replayed again, so
        days commit without waiting for the disk; the run's last record is written durably,
        which also makes every day before it durable. False once the days ran out."""
        done = 0
        with self.broker.transaction(durable=False), self.store.transaction(durable=False):
            for ts, snaps in todo:
                if done == 0:  # the policy files, once a group: a stat of each costs more
                    self._reload(ts)  # than a replayed day's decisions
                self._day(ts, snaps)
                done += 1
                tick.day, tick.ts = tick.day + 1, ts
                if progress is not None:
                    progress(tick)
                if done == DAYS_PER_COMMIT or (self.witness is not None and
                                               self.witness.due(utc_now())):
                    return True
        return False

    def _day(self, ts: str, snaps: Sequence[Mapping[str, Any]]) -> None:
        """One replayed day, inside the transaction of its group of days."""
        result = run_cycle(self.compiled, self.store, self.broker, snaps,
                           run_id=self.run_id, approver=self.config.approval,
                           on_broker_error=self._broker_error(ts), queue=self.queue,
                           flush=False, last_rebalance=self._last_rebalance,
                           clock=SNAPSHOT, requester=run_service(self.run_id),
                           activity=self.activity)
        if result.rebalanced:
            self._last_rebalance = result.ts
        self._after_cycle(result, snaps)
        if self.shadow is not None:
            self.shadow.observe(self.store, self.run_id, snaps, result, self.compiled.safety)

    def _checkpointed(self, cp: Checkpoint, path: Path) -> None:
        """A checkpoint goes to the alert sinks too: a second witness."""
        self.alerts.on_checkpoint(format_utc(utc_now()), cp.to_json(), str(path))

    def _reload(self, ts: str) -> None:
        if self._poll is None:
            return
        fresh, problems = self._poll()
        if problems:
            self.alerts.on_policy_load_failed(ts, problems)
        if fresh is not None:
            # Swapped between two cycles: no evaluation ever sees half of each set.
            old = self.compiled
            self.compiled = fresh
            self.policy_set = fresh.policy_set
            # Nobody is at the keyboard: the reload is the run's own service account's.
            self.store.record_activation(fresh.policy_set, actor=run_service(self.run_id),
                                         scope="run", run_id=self.run_id)
            old.close()

    def _broker_error(self, ts: str) -> Callable[[str, str], None]:
        def report(client_id: str, error: str) -> None:
            self.alerts.on_broker_error(ts, client_id, error)
        return report

    def _after_cycle(self, result: CycleResult, snaps: Sequence[Mapping[str, Any]]) -> None:
        """Resume by the declared rule, record the day (one transaction with the cycle's own
        records), then raise the day's alerts."""
        now = parse_utc(result.ts)
        writes = result.writes
        assert writes is not None
        prices = result.prices
        for d in result.made:
            self._latest.observe(result.cycle_id, d.symbol, d.verdict)
        halting = [d for d in result.decisions.values() if d.action is Action.HALT]
        view = result.state
        if halting or (view.state is trading.TradingState.HALTED and
                       result.previous_state.state is not trading.TradingState.HALTED):
            self._last_halt_fire = now  # a rail that halts, or an order rule that latched
        view = self._declared_resume(view, halting, result, now)
        positions = self.broker.positions()
        cash = self.broker.cash()
        self._last_prices.update(prices)
        equity = cash + sum(n * self._last_prices.get(s, 0.0) for s, n in positions.items())
        if self._bh_shares is None and prices:
            start = self.book.cash + sum(n * prices.get(s, 0.0)
                                         for s, n in self.book.positions.items())
            each = start / len(prices)
            self._bh_shares = {s: each / p for s, p in prices.items()}
        bh = sum(n * self._last_prices.get(s, 0.0) for s, n in (self._bh_shares or {}).items())
        rot = result.rotation
        writes.add("cycle", f"{self.run_id}:{result.ts}", {
            "run_id": self.run_id, "ts": result.ts, "equity": round(equity, 2),
            "cash": round(cash, 2), "positions": positions, "prices": prices,
            "buy_hold_equity": round(bh, 2),
            "actions": {s: d.action.value for s, d in result.decisions.items()},
            "deciding": {s: d.rule
                         for s, d in result.decisions.items()},
            "fired": {s: [f.rule for f in d.fired] for s, d in result.decisions.items()},
            "facts": {str(s.get("symbol")): {k: _plain(s.get(k)) for k in SAFETY_FACTS}
                      for s in snaps},
            "trading_state": view.state.value,
            "rebalance": {"triggered": bool(rot and rot.trigger.triggered),
                          "executed": result.rebalanced,
                          "rule": rot.trigger.rule if rot else None},
            "orders": result.counts(),
            "order_lines": [{"client_id": o.client_id, "symbol": o.order.symbol,
                             "side": o.order.side, "shares": o.order.shares,
                             "status": o.status, "rule": o.rule} for o in result.outcomes],
        })
        writes.flush()
        self._measure(result, equity, bh, cash)
        for sym, d in sorted(result.decisions.items()):
            self.alerts.on_safety(result.ts, sym, d.action, d.rule)
        self.alerts.on_trading_state(result.ts, view.state.value,
                                     halting[0].rule if halting else None)
        for item in self.queue.pending(self.run_id):
            age = now - parse_utc(item.requested_at)
            if age >= self.alerts.approval_wait_limit:
                self.alerts.on_approval_waiting(result.ts, item.item_id, age)


    def _declared_resume(self, view: trading.StateView, halting: Sequence[object],
                         result: CycleResult, now: datetime) -> trading.StateView:
        """The declared operator: a halt is resumed, and a reduce-only latch re-enabled, once
        `after_days` passed without a halting rule (or since the latch)."""
        days = self.config.resume.after_days
        writes = result.writes
        if days is None or writes is None:
            return view
        wait = timedelta(days=days)
        if view.state is trading.TradingState.HALTED and not halting and \
                self._last_halt_fire and now - self._last_halt_fire >= wait:
            try:
                resumed = trading.resume(view, self._latest.verdicts(), by="replay-operator",
                                         reason=self.config.resume.describe(), ts=result.ts)
            except trading.ResumeRefused:
                resumed = view  # a symbol last seen halting still halts: no resume
            if resumed != view:
                writes.add(*trading.change(resumed, view, run_id=self.run_id,
                                           by="replay-operator", resumed=True))
                self.activity.marks.reset_peak()
            view = resumed
        if view.reduce_only and view.state is not trading.TradingState.HALTED and \
                view.since and now - parse_utc(view.since) >= wait:
            enabled = trading.reenable(view, by="replay-operator",
                                       reason=self.config.resume.describe(), ts=result.ts)
            writes.add(*trading.change(enabled, view, run_id=self.run_id,
                                       by="replay-operator", resumed=True))
            view = enabled
        return view

    def _measure(self, result: CycleResult, equity: float, buy_hold: float,
                 cash: float) -> None:
        """The run's metrics: gauges and counters with bounded history (Metrics)."""
        m = self.alerts.metrics
        m.set("equity", equity, ts=result.ts)
        m.set("buy_hold_equity", buy_hold, ts=result.ts)
        m.set("cash", cash, ts=result.ts)
        for d in result.made:
            m.inc(f"decisions.{d.action.value}", ts=result.ts)
        for status, n in result.counts().items():
            if n:
                m.inc(f"orders.{status}", n, ts=result.ts)
        if result.rebalanced:
            m.inc("rebalances", ts=result.ts)


def _plain(v: object) -> object:
    if isinstance(v, Mapping):
        return v.get("value")
    return v

