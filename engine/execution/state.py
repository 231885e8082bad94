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
    """Lift a latched halt. Refused without a name and reason, or while a halting rule fires
    in `verdicts` (see LatestVerdicts)."""
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


Verdict = tuple[Action, str | None]


class LatestVerdicts:
    """What a resume is checked against: for every symbol ever decided, its verdict in the
    latest cycle it appeared in (the most restrictive of its decisions there), and the
    verdicts of the last cycle's snapshots that named no symbol.

    A symbol that halted and has not been decided clear since keeps the halt standing, however
    many cycles of other symbols (or `eval`s of unrelated ones) came after it."""

    def __init__(self) -> None:
        self._symbols: dict[str, tuple[str, Verdict]] = {}
        self._unnamed: tuple[str, list[Verdict]] = ("", [])
        self._last = ""

    def observe(self, cycle: str, symbol: str | None, verdict: Verdict) -> None:
        """One decision of cycle `cycle`, in the order they were made."""
        self._last = cycle
        if symbol is None:
            if self._unnamed[0] != cycle:
                self._unnamed = (cycle, [])
            self._unnamed[1].append(verdict)
            return
        held = self._symbols.get(symbol)
        if held is not None and held[0] == cycle and held[1][0].severity >= verdict[0].severity:
            return
        self._symbols[symbol] = (cycle, verdict)

    def verdicts(self) -> dict[str, Verdict]:
        out = {sym: v for sym, (_, v) in self._symbols.items()}
        if self._unnamed[0] == self._last:
            out.update({f"?{n}": v for n, v in enumerate(self._unnamed[1])})
        return out


def latest_verdicts(store: AuditStore, run_id: str | None = None) -> dict[str, Verdict]:
    """The latest verdicts (see LatestVerdicts) of `run_id` (None: the live system), from every
    decision it recorded. Decisions recorded before cycles were named count each as a cycle of
    its own."""
    latest = LatestVerdicts()
    for r in store.iter_records("decision"):
        if r.body.get("run_id") != run_id:
            continue
        d = r.body.get("decision", {})
        symbol = d.get("symbol")
        rule = (d.get("deciding_rule") or {}).get("rule")
        latest.observe(str(r.body.get("cycle") or f"seq:{r.seq}"),
                       symbol if isinstance(symbol, str) else None, (Action(d["action"]), rule))
    return latest.verdicts()
