"""The summary of one run: what it held, traded, decided and alerted, as JSON or text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.monitoring.summary.performance import Performance
from engine.monitoring.summary.records import AlertLine
from engine.monitoring.summary.tally import Counts
from engine.monitoring.summary.text import render_lines
from engine.monitoring.summary.years import NOTABLE_YEARS, YearSummary


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    started_at: str | None
    finished_at: str | None
    facts_file: str | None
    portfolio_file: str | None
    policies: tuple[tuple[str, str], ...]
    policy_hash: str | None
    symbols: tuple[str, ...]
    initial_cash: float | None
    approval_rule: str | None
    resume_rule: str | None
    days: int
    first_day: str | None
    last_day: str | None
    symbol_days_by_action: Counts
    book_days_by_action: Counts
    days_by_trading_state: Counts
    rules_fired: Counts
    rules_deciding: Counts
    #: Days a rebalance was triggered, by the rule that triggered it.
    rebalances: int
    rebalances_by_rule: Counts
    #: Days a triggered rebalance was carried out.
    rebalances_executed: int
    orders: int
    #: Distinct orders that reached each status at some point ("sent": handed to the broker,
    #: which a filled order was).
    orders_by_status: Counts
    #: Distinct orders by the last status recorded for them.
    orders_final_status: Counts
    #: Distinct orders denied, by the rule that denied them (rails, latches, order policy).
    denials_by_rule: Counts
    book: Performance
    buy_hold: Performance
    years: tuple[YearSummary, ...]
    alerts: int
    alerts_by_severity: Counts
    last_alerts: tuple[AlertLine, ...]
    sink_failures: int

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "facts_file": self.facts_file,
            "portfolio_file": self.portfolio_file,
            "policies": dict(self.policies),
            "policy_hash": self.policy_hash,
            "symbols": list(self.symbols),
            "initial_cash": self.initial_cash,
            "approval_rule": self.approval_rule,
            "resume_rule": self.resume_rule,
            "days": self.days,
            "first_day": self.first_day,
            "last_day": self.last_day,
            "symbol_days_by_action": dict(self.symbol_days_by_action),
            "book_days_by_action": dict(self.book_days_by_action),
            "days_by_trading_state": dict(self.days_by_trading_state),
            "rules_fired": dict(self.rules_fired),
            "rules_deciding": dict(self.rules_deciding),
            "rebalances": {
                "count": self.rebalances,
                "by_rule": dict(self.rebalances_by_rule),
                "executed": self.rebalances_executed,
            },
            "orders": {
                "count": self.orders,
                "by_status": dict(self.orders_by_status),
                "final_status": dict(self.orders_final_status),
                "denied_by_rule": dict(self.denials_by_rule),
            },
            "book": self.book.to_json(),
            "buy_hold": self.buy_hold.to_json(),
            "years": [y.to_json() for y in self.years],
            "notable_years": [y.to_json() for y in self.years if y.year in NOTABLE_YEARS],
            "alerts": {
                "count": self.alerts,
                "by_severity": dict(self.alerts_by_severity),
                "last": [a.to_json() for a in self.last_alerts],
                "sink_failures": self.sink_failures,
            },
        }

    def render_text(self) -> str:
        """A plain-text report: a few lines and fixed-width tables, the same on every call."""
        return "\n".join(render_lines(self)) + "\n"
