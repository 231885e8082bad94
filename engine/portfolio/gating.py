"""Apply each symbol's safety verdict to a trade plan: what goes out, what is held, what exits.

Per symbol, by its action: `halt` holds every line; `flatten` holds buys and replaces the
symbol's sells with one SELL of the whole position; `block_new` and `wait_confirmation`
keep sells and hold buys; `allow` keeps every line. A symbol without a valid verdict is
held whole (fail closed), under the rule `verdict-missing` or `verdict-invalid`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from engine.actions import Action
from engine.portfolio.book import Book
from engine.portfolio.drift import usable_price
from engine.portfolio.planner import PlanLine

Verdict = tuple[Action, str | None]

VERDICT_MISSING = "verdict-missing"
VERDICT_INVALID = "verdict-invalid"
#: Names the rule of a restrictive verdict that came without one.
UNNAMED_RULE = "unnamed-rule"


@dataclass(frozen=True)
class HeldLine:
    """A line kept back, the rule that kept it and that rule's action."""

    line: PlanLine
    rule: str
    action: Action


@dataclass(frozen=True)
class GatedPlan:
    """`plan`: every order that may go out, sells before buys, then by symbol; flatten
    exits are among them. `exits`: those flatten exits again, for the record (send `plan`
    only). `held`: lines kept back, never in `plan`. `unexited`: symbols to flatten whose
    exit could not be made, with why."""

    plan: tuple[PlanLine, ...]
    held: tuple[HeldLine, ...]
    exits: tuple[PlanLine, ...]
    unexited: Mapping[str, str]


def gate_plan(
    plan_lines: Iterable[PlanLine],
    book: Book,
    verdicts: Mapping[str, Verdict],
    *,
    prices: Mapping[str, object] | None = None,
) -> GatedPlan:
    """Gate `plan_lines` by `verdicts` (action and deciding rule, by symbol).

    A flatten exit sells exactly the shares `book` holds, at the price of the symbol's plan
    line, or at `prices` when the plan has no line for it; without either it is `unexited`.
    """
    by_symbol: dict[str, list[PlanLine]] = {}
    for line in plan_lines:
        by_symbol.setdefault(line.symbol, []).append(line)
    to_flatten = {
        s for s, v in verdicts.items() if _verdict(v)[0] is Action.FLATTEN and book.shares(s) > 0
    }

    kept: list[PlanLine] = []
    held: list[HeldLine] = []
    exits: list[PlanLine] = []
    unexited: dict[str, str] = {}
    for symbol in sorted(by_symbol.keys() | to_flatten):
        lines = by_symbol.get(symbol, [])
        action, rule = (
            _verdict(verdicts[symbol]) if symbol in verdicts else (Action.HALT, VERDICT_MISSING)
        )
        if action is Action.ALLOW:
            kept.extend(lines)
            continue
        for line in lines:
            if line.side == "BUY" or action is Action.HALT:
                held.append(HeldLine(line, rule, action))
            elif action is not Action.FLATTEN:
                kept.append(line)
        # A flatten's own exit supersedes the symbol's planned sells.
        if action is Action.FLATTEN and book.shares(symbol) > 0:
            exit_line = _exit(symbol, book.shares(symbol), lines, prices, rule)
            if exit_line is None:
                unexited[symbol] = "no usable price for the exit"
            else:
                kept.append(exit_line)
                exits.append(exit_line)

    return GatedPlan(
        plan=tuple(sorted(kept, key=_order)),
        held=tuple(sorted(held, key=lambda h: _order(h.line))),
        exits=tuple(sorted(exits, key=_order)),
        unexited=MappingProxyType(dict(sorted(unexited.items()))),
    )


def _verdict(verdict: object) -> tuple[Action, str]:
    """The action and rule name; anything malformed reads as a halt (fail closed)."""
    if not isinstance(verdict, tuple) or len(verdict) != 2:
        return Action.HALT, VERDICT_INVALID
    action, rule = verdict
    if not isinstance(action, Action) or not (rule is None or isinstance(rule, str)):
        return Action.HALT, VERDICT_INVALID
    return action, rule or UNNAMED_RULE


def _exit(
    symbol: str,
    shares: int,
    lines: list[PlanLine],
    prices: Mapping[str, object] | None,
    rule: str,
) -> PlanLine | None:
    price = lines[0].price if lines else (usable_price(prices, symbol) if prices else None)
    if price is None:
        return None
    return PlanLine(symbol, "SELL", shares, price, shares * price, f"flatten: {rule}")


def _order(line: PlanLine) -> tuple[int, str]:
    return (0 if line.side == "SELL" else 1, line.symbol)
