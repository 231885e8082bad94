"""Counting a run's records into its summary."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from engine.actions import ACTION_NAMES, most_restrictive
from engine.audit.store import AuditStore
from engine.monitoring.summary.model import RunSummary
from engine.monitoring.summary.performance import performance
from engine.monitoring.summary.records import (
    opt_number,
    opt_str,
    read_alerts,
    read_cycles,
    read_orders,
    run_started,
)
from engine.monitoring.summary.tally import by_count, in_order
from engine.monitoring.summary.years import by_year

ORDER_STATUSES: tuple[str, ...] = (
    "sent",
    "filled",
    "denied",
    "pending_approval",
    "approved",
    "rejected",
    "expired",
    "cancelled",
    "failed",
)
SEVERITIES: tuple[str, ...] = ("critical", "warning", "info")
TRADING_STATES: tuple[str, ...] = ("ACTIVE", "REDUCING", "HALTED")


def summarize(store: AuditStore, run_id: str | None = None) -> RunSummary:
    """The summary of run `run_id` (the latest run when None), from the audit records alone."""
    started = run_started(store, run_id)
    run_id = started.ref
    head = started.body
    cycles = read_cycles(store, run_id)
    finished = next((r for r in store.find(run_id) if r.kind == "run_finished"), None)

    symbol_days: Counter[str] = Counter()
    book_days: Counter[str] = Counter()
    states: Counter[str] = Counter()
    fired: Counter[str] = Counter()
    deciding: Counter[str] = Counter()
    rebalances: Counter[str] = Counter()
    executed = 0
    for c in cycles:
        symbol_days.update(a.value for _, a in c.actions)
        book_days[most_restrictive(a for _, a in c.actions).value] += 1
        states[c.trading_state] += 1
        fired.update(c.fired)
        deciding.update(c.deciding)
        if c.rebalanced:
            rebalances[c.rebalance_rule or "(no rule named)"] += 1
            executed += int(c.rebalance_executed)

    reached, final, denials = read_orders(store, run_id)
    alerts, by_severity, last = read_alerts(store, run_id)
    failures = sum(
        1 for r in store.iter_records("alert_sink_failure") if r.body.get("run_id") == run_id
    )

    policies = head.get("policies")
    return RunSummary(
        run_id=run_id,
        started_at=opt_str(head.get("started_at")),
        finished_at=opt_str(finished.body.get("finished_at")) if finished else None,
        facts_file=opt_str(head.get("facts_file")),
        portfolio_file=opt_str(head.get("portfolio_file")),
        policies=tuple(sorted((str(k), str(v)) for k, v in policies.items()))
        if isinstance(policies, Mapping)
        else (),
        policy_hash=opt_str(head.get("policy_hash")),
        symbols=tuple(sorted(str(s) for s in head.get("symbols") or ())),
        initial_cash=opt_number(head.get("initial_cash")),
        approval_rule=opt_str(head.get("approval_rule")),
        resume_rule=opt_str(head.get("resume_rule")),
        days=len(cycles),
        first_day=cycles[0].ts if cycles else None,
        last_day=cycles[-1].ts if cycles else None,
        symbol_days_by_action=in_order(symbol_days, ACTION_NAMES),
        book_days_by_action=in_order(book_days, ACTION_NAMES),
        days_by_trading_state=in_order(states, TRADING_STATES),
        rules_fired=by_count(fired),
        rules_deciding=by_count(deciding),
        rebalances=sum(rebalances.values()),
        rebalances_by_rule=by_count(rebalances),
        rebalances_executed=executed,
        orders=len(final),
        orders_by_status=in_order(Counter({s: len(ids) for s, ids in reached.items()}),
                                  ORDER_STATUSES),
        orders_final_status=in_order(Counter(final.values()), ORDER_STATUSES),
        denials_by_rule=by_count(denials),
        book=performance([c.equity for c in cycles]),
        buy_hold=performance([c.buy_hold for c in cycles]),
        years=by_year(cycles),
        alerts=alerts,
        alerts_by_severity=in_order(by_severity, SEVERITIES),
        last_alerts=last,
        sink_failures=failures,
    )
