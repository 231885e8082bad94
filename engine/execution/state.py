"""The trading state of the book, derived from decisions, with a latched halt.

ACTIVE: every order may go out subject to its symbol's decision and the approval policy.
REDUCING: some symbol is under flatten or block_new (per-symbol gating applies).
HALTED: a halting rule fired. The halt is latched: it holds after the rule stops firing, until a
named person resumes, and a resume is refused while a halting rule still fires.
Every change is an audit record (kind `trading_state`); the current state is the latest one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from engine.actions import Action
from engine.audit.store import AuditStore

KIND = "trading_state"
REF = "book"


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


@dataclass(frozen=True)
class StateView:
    state: TradingState
    rule: str | None  # the rule that latched the halt, or that made the book reduce
    since: str | None
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state.value, "rule": self.rule, "since": self.since,
                "reason": self.reason}


INITIAL = StateView(TradingState.ACTIVE, None, None, "no decision yet")


def derive(current: StateView, verdicts: Mapping[str, tuple[Action, str | None]],
           ts: str) -> StateView:
    """The state after a cycle whose decisions are `verdicts` (symbol -> action, rule)."""
    halting = sorted((sym, rule) for sym, (a, rule) in verdicts.items() if a is Action.HALT)
    if current.state is TradingState.HALTED:
        return current
    if halting:
        sym, rule = halting[0]
        return StateView(TradingState.HALTED, rule, ts, f"{rule} fired for {sym}")
    reducing = sorted((sym, rule) for sym, (a, rule) in verdicts.items()
                      if a in (Action.FLATTEN, Action.BLOCK_NEW))
    if reducing:
        sym, rule = reducing[0]
        if current.state is TradingState.REDUCING:
            return current
        return StateView(TradingState.REDUCING, rule, ts, f"{rule} for {sym}")
    if current.state is TradingState.ACTIVE and current.since is not None:
        return current
    return StateView(TradingState.ACTIVE, None, ts, "no symbol restricted")


class ResumeRefused(Exception):
    pass


def resume(current: StateView, verdicts: Mapping[str, tuple[Action, str | None]], *, by: str,
           reason: str, ts: str) -> StateView:
    """Lift a latched halt. Refused without a name and reason, or while a halting rule fires."""
    if not by.strip():
        raise ResumeRefused("a resume needs the name of the person taking it (--by)")
    if not reason.strip():
        raise ResumeRefused("a resume needs a reason (--reason)")
    if current.state is not TradingState.HALTED:
        raise ResumeRefused(f"trading is {current.state.value}, not halted: nothing to resume")
    still = sorted(f"{rule} ({sym})" for sym, (a, rule) in verdicts.items() if a is Action.HALT)
    if still:
        raise ResumeRefused("a halting rule still fires: " + ", ".join(still))
    return StateView(TradingState.ACTIVE, None, ts, f"resumed by {by}: {reason}")


def load(store: AuditStore, run_id: str | None = None) -> StateView:
    latest = store.latest(KIND, run_id=run_id)
    if latest is None:
        return INITIAL
    b = latest.body
    return StateView(TradingState(b["state"]), b.get("rule"), b.get("since"), b.get("reason", ""))


def change(view: StateView, previous: StateView,
           **extra: Any) -> tuple[str, str, dict[str, Any]]:
    """The audit record of a change from `previous` to `view`: (kind, ref, body)."""
    return KIND, REF, {**view.to_json(), "previous": previous.state.value, **extra}


def record(store: AuditStore, view: StateView, previous: StateView, *,
           extra: Mapping[str, Any] | None = None) -> bool:
    """Record `view` when it differs from `previous`; True when a change was recorded."""
    if view == previous:
        return False
    store.append(*change(view, previous, **(extra or {})))
    return True


def latest_verdicts(store: AuditStore, run_id: str | None = None,
                    ) -> dict[str, tuple[Action, str | None]]:
    """The verdict of each symbol in the latest recorded cycle (decisions sharing the newest
    snapshot time) of `run_id` (None: the live system): what a resume is checked against."""
    verdicts: dict[str, tuple[Action, str | None]] = {}
    latest_ts: str | None = None
    for r in store.records("decision", limit=2000):
        if r.body.get("run_id") != run_id:
            continue
        d = r.body.get("decision", {})
        ts = d.get("ts")
        latest_ts = latest_ts or ts
        if ts != latest_ts:
            break
        rule = (d.get("deciding_rule") or {}).get("rule")
        verdicts.setdefault(str(d.get("symbol")), (Action(d["action"]), rule))
    return verdicts
