"""The service's Prometheus metrics, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from engine.execution.state import TradingState


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.decisions = Counter("fugger_decisions_total", "Decisions made, by action and rule",
                                 ["action", "rule"], registry=r)
        self.gate = Counter("fugger_gate_outcomes_total", "Order outcomes of the gate",
                            ["status"], registry=r)
        self.approvals_waiting = Gauge("fugger_approvals_waiting", "Orders waiting for a person",
                                       registry=r)
        self.oldest_approval = Gauge("fugger_approval_oldest_age_seconds",
                                     "Age of the oldest waiting approval", registry=r)
        self.trading_state = Gauge("fugger_trading_state", "1 for the current trading state",
                                   ["state"], registry=r)
        self.alerts = Gauge("fugger_alerts", "Alerts kept in the audit store", registry=r)
        self.latency = Histogram("fugger_request_seconds", "Request latency",
                                 ["method", "route"], registry=r,
                                 buckets=(.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5,
                                          1, 2.5))
        self.reloads = Gauge("fugger_policy_reloads", "Policy sets activated by the watcher",
                             registry=r)
        self.commits = Gauge("fugger_audit_commits", "Durable commits of the audit store by "
                             "this process (group commit: fewer than the requests recorded)",
                             registry=r)
        self.reload_failures = Gauge("fugger_policy_reload_failures",
                                     "Policy changes rejected (the last good set kept)",
                                     registry=r)

    def set_state(self, state: TradingState) -> None:
        for s in TradingState:
            self.trading_state.labels(s.value).set(1 if s is state else 0)
