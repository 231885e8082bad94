"""Reading and checking the audit records of one run: its start, its days, orders and alerts.

A record that cannot be read raises SummaryError naming the store, the record's seq and kind.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.actions import ACTION_NAMES, Action
from engine.audit import prefix
from engine.audit.store import AuditStore, Record
from engine.timeutil import TimestampError, parse_utc

#: Statuses that mean the order was handed to the broker: each counts as "sent".
_AT_BROKER = frozenset({"submitting", "sent", "filled"})
LAST_ALERTS = 20


class SummaryError(ValueError):
    """The audit store holds no such run, or a record of it cannot be read."""


@dataclass(frozen=True)
class AlertLine:
    alert_id: str
    ts: str
    severity: str
    kind: str
    key: str
    title: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {
            "alert_id": self.alert_id,
            "ts": self.ts,
            "severity": self.severity,
            "kind": self.kind,
            "key": self.key,
            "title": self.title,
            "message": self.message,
        }


@dataclass(frozen=True)
class Cycle:
    seq: int
    ref: str
    moment: datetime
    ts: str
    equity: float
    buy_hold: float
    actions: tuple[tuple[str, Action], ...]
    fired: tuple[str, ...]
    deciding: tuple[str, ...]
    trading_state: str
    rebalance_rule: str | None
    rebalanced: bool
    rebalance_executed: bool


def run_ids(store: AuditStore) -> list[str]:
    """Every run in the store, oldest first."""
    return [r.ref for r in store.iter_records("run_started")]


def run_started(store: AuditStore, run_id: str | None) -> Record:
    if run_id is None:
        record = store.latest("run_started")
        if record is None:
            raise SummaryError(f"{store.path}: no run recorded (no run_started record)")
    else:
        try:
            run_id = prefix.resolve(store, run_id, kind="run_started", what="run")
        except prefix.AmbiguousRef as e:
            raise SummaryError(f"{store.path}: {e}") from None
        record = next((r for r in store.find(run_id) if r.kind == "run_started"), None)
        if record is None:
            known = run_ids(store)
            hint = f"; runs recorded: {', '.join(known[-5:])}" if known else "; no run recorded"
            raise SummaryError(f"{store.path}: no run {run_id!r}{hint}")
    if not isinstance(record.body, dict):
        raise SummaryError(f"{store.path}: record {record.seq} (run_started) is not an object")
    return record


def cycle_records(store: AuditStore, run_id: str) -> list[tuple[datetime, Record]]:
    """The `cycle` records of run `run_id`, one per day, in day order, with their day.

    A resumed run may record a day again; the later record is the one that stands.
    """
    by_day: dict[datetime, Record] = {}
    for record in store.iter_records("cycle"):
        body = record.body
        if not isinstance(body, dict) or body.get("run_id") != run_id:
            continue
        ts = body.get("ts")
        try:
            moment = parse_utc(ts)
        except TimestampError as exc:
            raise SummaryError(f"{_where(store, record)}: ts: {exc}") from None
        by_day[moment] = record
    return [(m, by_day[m]) for m in sorted(by_day)]


def _where(store: AuditStore, r: Record) -> str:
    return f"{store.path}: record {r.seq} ({r.kind} {r.ref})"


def read_cycles(store: AuditStore, run_id: str) -> list[Cycle]:
    return [_cycle(store, moment, r) for moment, r in cycle_records(store, run_id)]


def _cycle(store: AuditStore, moment: datetime, r: Record) -> Cycle:
    b = r.body
    where = _where(store, r)
    ts = b.get("ts")
    actions = b.get("actions")
    if not isinstance(actions, Mapping) or not actions:
        raise SummaryError(f"{where}: actions must be a non-empty object, got {actions!r}")
    parsed: list[tuple[str, Action]] = []
    for symbol, action in sorted(actions.items()):
        if not isinstance(action, str) or action not in ACTION_NAMES:
            raise SummaryError(
                f"{where}: actions.{symbol} is {action!r}, not a safety action "
                f"({', '.join(ACTION_NAMES)})"
            )
        parsed.append((str(symbol), Action(action)))
    fired: list[str] = []
    for symbol, rules in sorted(_mapping(b.get("fired"), f"{where}: fired").items()):
        if not isinstance(rules, list) or not all(isinstance(x, str) for x in rules):
            raise SummaryError(f"{where}: fired.{symbol} must be a list of rule ids")
        fired.extend(rules)
    deciding = [
        str(rule)
        for _, rule in sorted(_mapping(b.get("deciding"), f"{where}: deciding").items())
        if rule is not None
    ]
    rebalance = _mapping(b.get("rebalance"), f"{where}: rebalance")
    state = b.get("trading_state")
    return Cycle(
        seq=r.seq,
        ref=r.ref,
        moment=moment,
        ts=str(ts),
        equity=_amount(b.get("equity"), f"{where}: equity"),
        buy_hold=_amount(b.get("buy_hold_equity"), f"{where}: buy_hold_equity"),
        actions=tuple(parsed),
        fired=tuple(fired),
        deciding=tuple(deciding),
        trading_state=state if isinstance(state, str) else "(not recorded)",
        rebalance_rule=opt_str(rebalance.get("rule")),
        rebalanced=rebalance.get("triggered") is True,
        # A record that does not say whether it was carried out is taken at its trigger.
        rebalance_executed=rebalance.get("executed", rebalance.get("triggered")) is True,
    )


def read_orders(store: AuditStore, run_id: str,
                ) -> tuple[dict[str, set[str]], dict[str, str], Counter[str]]:
    """Distinct orders by each status they reached, the last status of each, and the orders
    denied counted by the rule that denied them."""
    reached: dict[str, set[str]] = {}
    final: dict[str, str] = {}
    denied_by: dict[str, str] = {}
    for r in store.iter_records("order"):
        b = r.body
        if not isinstance(b, dict) or b.get("run_id") != run_id:
            continue
        status = b.get("status")
        if not isinstance(status, str) or not status:
            raise SummaryError(f"{store.path}: record {r.seq} (order {r.ref}): status is "
                               f"{status!r}")
        client_id = str(b.get("client_id") or r.ref)
        reached.setdefault(status, set()).add(client_id)
        if status in _AT_BROKER:
            reached.setdefault("sent", set()).add(client_id)
        final[client_id] = status
        if status == "denied":
            denied_by.setdefault(client_id, str(b.get("rule") or "(no rule named)"))
    return reached, final, Counter(denied_by.values())


def read_alerts(store: AuditStore, run_id: str) -> tuple[int, Counter[str], tuple[AlertLine, ...]]:
    count = 0
    by_severity: Counter[str] = Counter()
    last: deque[AlertLine] = deque(maxlen=LAST_ALERTS)
    for r in store.iter_records("alert"):
        b = r.body
        if not isinstance(b, dict) or b.get("run_id") != run_id:
            continue
        count += 1
        line = alert_line(r)
        by_severity[line.severity] += 1
        last.append(line)
    return count, by_severity, tuple(last)


def alert_line(r: Record) -> AlertLine:
    """The fields of an `alert` record a person reads."""
    b = r.body if isinstance(r.body, dict) else {}
    return AlertLine(
        alert_id=str(b.get("alert_id") or r.ref),
        ts=str(b.get("ts", "")),
        severity=str(b.get("severity", "")),
        kind=str(b.get("kind", "")),
        key=str(b.get("key", "")),
        title=str(b.get("title", "")),
        message=str(b.get("message", "")),
    )


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SummaryError(f"{where} must be an object, got {value!r}")
    return value


def _amount(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SummaryError(f"{where} must be a finite number, got {value!r}")
    if value < 0:
        raise SummaryError(f"{where} must not be negative, got {value!r}")
    return float(value)


def opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def opt_number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)
