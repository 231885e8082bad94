"""The one gate every order passes: a pure verdict from the decision, the trading state and
the approval policy. There is no argument, flag or variable that skips it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from engine.actions import Action
from engine.decision import Decision
from engine.execution.approval_policy import ApprovalEvaluator
from engine.execution.state import StateView, TradingState


def _malformed(order: OrderIntent) -> str:
    """Why an order cannot even be judged; an order the gate cannot classify never goes out."""
    if order.side not in ("BUY", "SELL"):
        return f"side must be BUY or SELL, got {order.side!r}"
    if isinstance(order.shares, bool) or not isinstance(order.shares, int) or order.shares <= 0:
        return f"shares must be a whole number above 0, got {order.shares!r}"
    price = order.price
    if isinstance(price, bool) or not isinstance(price, (int, float)) or \
            not math.isfinite(price) or price <= 0:
        return f"price must be a finite number above 0, got {price!r}"
    if isinstance(order.held_shares, bool) or not isinstance(order.held_shares, int) or \
            order.held_shares < 0:
        return f"held shares must be a whole number, got {order.held_shares!r}"
    return ""


class Verdict(StrEnum):
    SEND = "send"
    DENIED = "denied"
    PENDING_APPROVAL = "pending_approval"


@dataclass(frozen=True)
class OrderIntent:
    symbol: str
    side: str  # BUY | SELL
    shares: int
    price: float
    held_shares: int  # what the book holds of the symbol before this order

    @property
    def opens(self) -> bool:
        """Long-only book: a buy opens or grows a position, a sell reduces one."""
        return self.side == "BUY"

    @property
    def notional(self) -> float:
        return abs(self.shares * self.price)


@dataclass(frozen=True)
class GateResult:
    verdict: Verdict
    rule: str | None
    reason: str
    #: How many distinct people must approve a held order.
    approvers: int = 1


def gate(order: OrderIntent, decision: Decision | None, state: StateView,
         approvals: ApprovalEvaluator, *, approved: bool = False) -> GateResult:
    """Whether `order` may go out now. `approved`: a person approved this very order; it
    still has to pass the rails as they are now."""
    malformed = _malformed(order)
    if malformed:
        return GateResult(Verdict.DENIED, "order-invalid", malformed)
    if decision is None or decision.symbol != order.symbol:
        return GateResult(Verdict.DENIED, "decision-missing",
                          f"no safety decision for {order.symbol} in this cycle")
    rule = decision.rule
    if state.state is TradingState.HALTED:
        return GateResult(Verdict.DENIED, state.rule or rule or "halt-latched",
                          f"trading is halted since {state.since} ({state.reason}); "
                          "a person must resume it")
    action = decision.action
    if action is Action.HALT:
        return GateResult(Verdict.DENIED, rule, "the rails halt this symbol")
    if order.opens and action in (Action.FLATTEN, Action.BLOCK_NEW):
        return GateResult(Verdict.DENIED, rule,
                          f"{action.value}: orders that open or grow a position are denied")
    if order.opens and action is Action.WAIT_CONFIRMATION and not approved:
        return GateResult(Verdict.PENDING_APPROVAL, rule,
                          "held until a clear evaluation or a person's approval",
                          approvals.default_approvers)
    if approved:
        return GateResult(Verdict.SEND, None, "approved, and the rails allow it now")
    need = approvals.need({
        "order_notional": order.notional,
        "order_opens": order.opens,
        "symbol_held": order.held_shares > 0,
        "safety_action": action.value,
    })
    if need.required:
        return GateResult(Verdict.PENDING_APPROVAL, need.rule,
                          f"the approval policy ({approvals.mode}) asks for "
                          + ("a person" if need.approvers == 1 else f"{need.approvers} people"),
                          need.approvers)
    return GateResult(Verdict.SEND, None, "the rails and the approval policy allow it")
