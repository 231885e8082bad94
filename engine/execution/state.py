"""The trading state of the book, derived from decisions, with a latched halt.

ACTIVE: every order may go out subject to its symbol's decision and the approval policy.
REDUCING: some symbol is under flatten or block_new (per-symbol gating applies); or, latched
(`reduce_only`), an order rule asked that the book only reduce until a person re-enables it.
HALTED: a halting rule fired, or a person killed the whole book. The halt is latched: it holds
after the rule stops firing, until a named person resumes, and a resume is refused while a
halting rule still fires.
A kill of some symbols or one side is a latched scope (`kills`): matching orders are refused
until a person resumes.
Every change is an audit record (kind `trading_state`); the current state is the latest one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
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


KILL_RULE = "kill-switch"


@dataclass(frozen=True)
class KillScope:
    """What a kill stopped: some symbols (none: every symbol) and one side (None: both)."""

    symbols: tuple[str, ...]
    side: str | None
    since: str
    by: str
    reason: str

    def matches(self, symbol: str, side: str) -> bool:
        return (not self.symbols or symbol in self.symbols) and \
            (self.side is None or side == self.side)

    def text(self) -> str:
        what = ", ".join(self.symbols) if self.symbols else "every symbol"
        return what + (f" ({self.side} orders)" if self.side else "")

    def to_json(self) -> dict[str, Any]:
        return {"symbols": list(self.symbols), "side": self.side, "since": self.since,
                "by": self.by, "reason": self.reason}

    @staticmethod
    def from_json(b: Mapping[str, Any]) -> KillScope:
        return KillScope(tuple(str(s) for s in b.get("symbols") or ()), b.get("side"),
                         str(b.get("since")), str(b.get("by")), str(b.get("reason")))


@dataclass(frozen=True)
class StateView:
    state: TradingState
    rule: str | None  # the rule that latched the halt, or that made the book reduce
    since: str | None
    reason: str = ""
    #: Latched by an order rule: only orders that reduce go out until a person re-enables.
    reduce_only: bool = False
    kills: tuple[KillScope, ...] = ()

    def kill_for(self, symbol: str, side: str) -> KillScope | None:
        return next((k for k in self.kills if k.matches(symbol, side)), None)

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state.value, "rule": self.rule, "since": self.since,
                "reason": self.reason, "reduce_only": self.reduce_only,
                "kills": [k.to_json() for k in self.kills]}


INITIAL = StateView(TradingState.ACTIVE, None, None, "no decision yet")


def derive(current: StateView, verdicts: Mapping[str, tuple[Action, str | None]],
           ts: str) -> StateView:
    """The state after a cycle whose decisions are `verdicts` (symbol -> action, rule)."""
    halting = sorted((sym, rule) for sym, (a, rule) in verdicts.items() if a is Action.HALT)
    if current.state is TradingState.HALTED:
        return current
    if halting:
        sym, rule = halting[0]
        return replace(current, state=TradingState.HALTED, rule=rule, since=ts,
                       reason=f"{rule} fired for {sym}")
    if current.reduce_only:
        return current
    reducing = sorted((sym, rule) for sym, (a, rule) in verdicts.items()
                      if a in (Action.FLATTEN, Action.BLOCK_NEW))
    if reducing:
        sym, rule = reducing[0]
        if current.state is TradingState.REDUCING:
            return current
        return replace(current, state=TradingState.REDUCING, rule=rule, since=ts,
                       reason=f"{rule} for {sym}")
    if current.state is TradingState.ACTIVE and current.since is not None:
        return current
    return replace(current, state=TradingState.ACTIVE, rule=None, since=ts,
                   reason="no symbol restricted")


def latch(current: StateView, action: str, rule: str, reason: str, ts: str) -> StateView:
    """The state after an order rule asked for `halt` or `reduce_only`."""
    if current.state is TradingState.HALTED:
        return current
    if action == "halt":
        return replace(current, state=TradingState.HALTED, rule=rule, since=ts, reason=reason)
    if current.reduce_only:
        return current
    return replace(current, state=TradingState.REDUCING, rule=rule, since=ts, reason=reason,
                   reduce_only=True)


def kill(current: StateView, symbols: Sequence[str], side: str | None, *, by: str,
         reason: str, ts: str) -> StateView:
    """The state after a person killed `symbols` (none: the whole book) on `side` (None:
    both). A kill of the whole book on both sides halts it."""
    _named(by, reason, "kill")
    if not symbols and side is None:
        return replace(current, state=TradingState.HALTED, rule=KILL_RULE, since=ts,
                       reason=f"killed by {by}: {reason}")
    scope = KillScope(tuple(sorted(set(symbols))), side, ts, by, reason)
    return replace(current, kills=(*current.kills, scope))


def _named(by: str, reason: str, what: str) -> None:
    if not by.strip():
        raise ResumeRefused(f"a {what} needs the name of the person taking it (--by)")
    if not reason.strip():
        raise ResumeRefused(f"a {what} needs a reason (--reason)")


class ResumeRefused(Exception):
    pass


def resume(current: StateView, verdicts: Mapping[str, tuple[Action, str | None]], *, by: str,
           reason: str, ts: str) -> StateView:
    """Lift a latched halt and every kill. Refused without a name and reason, or while a
    halting rule fires in `verdicts` (see LatestVerdicts). A reduce-only latch stays: it is
    re-enabled on its own."""
    _named(by, reason, "resume")
    if current.state is not TradingState.HALTED and not current.kills:
        raise ResumeRefused(f"trading is {current.state.value}, not halted or killed: nothing "
                            "to resume")
    still = sorted(f"{rule} ({sym})" for sym, (a, rule) in verdicts.items() if a is Action.HALT)
    if still:
        raise ResumeRefused("a halting rule still fires: " + ", ".join(still))
    if current.reduce_only:
        return StateView(TradingState.REDUCING, current.rule, ts,
                         f"halt resumed by {by}: {reason}; still reduce-only", True)
    return StateView(TradingState.ACTIVE, None, ts, f"resumed by {by}: {reason}")


def reenable(current: StateView, *, by: str, reason: str, ts: str) -> StateView:
    """End a reduce-only latch. Refused without a name and reason, while halted (resume
    first), or when the book is not reduce-only."""
    _named(by, reason, "re-enable")
    if current.state is TradingState.HALTED:
        raise ResumeRefused("trading is HALTED: resume the halt first")
    if not current.reduce_only:
        raise ResumeRefused(f"trading is {current.state.value}, not reduce-only: nothing to "
                            "re-enable")
    return StateView(TradingState.ACTIVE, None, ts, f"re-enabled by {by}: {reason}",
                     kills=current.kills)


def load(store: AuditStore, run_id: str | None = None) -> StateView:
    latest = store.latest(KIND, run_id=run_id)
    if latest is None:
        return INITIAL
    b = latest.body
    return StateView(TradingState(b["state"]), b.get("rule"), b.get("since"), b.get("reason", ""),
                     bool(b.get("reduce_only", False)),
                     tuple(KillScope.from_json(k) for k in b.get("kills") or ()))


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
