"""The one gate every order passes: a pure verdict from the decision, the trading state, the
order policy (pre-trade controls) and the approval policy, in that order. There is no
argument, flag or variable that skips it.

The order policy judges every order after the rails and before approvals, also an order a
person approved: an approval does not lift a price collar or a loss breaker."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from engine.actions import Action, OrderAction
from engine.decision import Decision
from engine.execution.approval_policy import ApprovalEvaluator
from engine.execution.state import StateView, TradingState

if TYPE_CHECKING:
    from engine.execution.order_policy import OrderJudgement, OrderPolicyEvaluator


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
    #: A limit order: `price` is its limit; it rests at the broker until the market reaches it.
    limit: bool = False

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
    #: A latch the order policy asks for (halt or reduce_only); the gateway records it.
    latch: OrderAction | None = None
    #: What the order policy decided, when it was consulted.
    controls: OrderJudgement | None = None


def gate(order: OrderIntent, decision: Decision | None, state: StateView,
         approvals: ApprovalEvaluator, *, controls: OrderPolicyEvaluator,
         order_facts: Mapping[str, Any], approved: bool = False) -> GateResult:
    """Whether `order` may go out now. `approved`: a person approved this very order; it
    still has to pass the rails and the order policy as they are now. `controls` (the order
    policies of the set, if any) judge the engine-computed `order_facts`; a missing fact fails
    closed."""
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
    kill = state.kill_for(order.symbol, order.side)
    if kill is not None:
        return GateResult(Verdict.DENIED, "kill-switch",
                          f"killed for {kill.text()} since {kill.since} by {kill.by}: "
                          f"{kill.reason}; a person must resume it")
    action = decision.action
    if action is Action.HALT:
        return GateResult(Verdict.DENIED, rule, "the rails halt this symbol")
    if order.opens and action in (Action.FLATTEN, Action.BLOCK_NEW):
        return GateResult(Verdict.DENIED, rule,
                          f"{action.value}: orders that open or grow a position are denied")
    if order.opens and state.reduce_only:
        return GateResult(Verdict.DENIED, state.rule or "reduce-only",
                          f"the book is reduce-only since {state.since} ({state.reason}); "
                          "a person must re-enable it")
    judgement = None
    if controls.active:
        judgement = controls.judge(order_facts)
        stop = _controls_verdict(order, judgement, approved, approvals.default_approvers)
        if stop is not None:
            return stop
    # Past the controls: a reduce_only that fired latches, and this order (which reduces)
    # goes on to the approval step.
    latch = OrderAction.REDUCE_ONLY if judgement is not None and \
        judgement.action is OrderAction.REDUCE_ONLY else None

    def result(verdict: Verdict, rule: str | None, reason: str,
               approvers: int = 1) -> GateResult:
        return GateResult(verdict, rule, reason, approvers, latch=latch, controls=judgement)

    if order.opens and action is Action.WAIT_CONFIRMATION and not approved:
        return result(Verdict.PENDING_APPROVAL, rule,
                      "held until a clear evaluation or a person's approval",
                      approvals.default_approvers)
    if approved:
        return result(Verdict.SEND, None, "approved, and the rails allow it now")
    need = approvals.need({
        "order_notional": order.notional,
        "order_opens": order.opens,
        "symbol_held": order.held_shares > 0,
        "safety_action": action.value,
    })
    if need.required:
        return result(Verdict.PENDING_APPROVAL, need.rule,
                      f"the approval policy ({approvals.mode}) asks for "
                      + ("a person" if need.approvers == 1 else f"{need.approvers} people"),
                      need.approvers)
    return result(Verdict.SEND, None, "the rails and the approval policy allow it")


def _controls_verdict(order: OrderIntent, j: OrderJudgement, approved: bool,
                      approvers: int) -> GateResult | None:
    """The gate's answer when the order policy stops or holds the order; None lets it on to
    the approval step. reduce_only latches and still lets an order that reduces through."""
    if j.action is OrderAction.HALT:
        return GateResult(Verdict.DENIED, j.rule, j.reason, latch=OrderAction.HALT,
                          controls=j)
    if j.action is OrderAction.REDUCE_ONLY and order.opens:
        return GateResult(Verdict.DENIED, j.rule, j.reason, latch=OrderAction.REDUCE_ONLY,
                          controls=j)
    if j.action is OrderAction.DENY:
        return GateResult(Verdict.DENIED, j.rule, j.reason, controls=j)
    if j.action is OrderAction.REQUIRE_APPROVAL and not approved:
        return GateResult(Verdict.PENDING_APPROVAL, j.rule, j.reason, approvers, controls=j)
    return None

