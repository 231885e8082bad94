"""An order intent as a program sends it to `fugger serve`, and the outcome it gets back: one
definition for the service and its client, with no web framework behind it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class OrderIn:
    """One order intent of POST /v1/orders."""

    symbol: str
    side: str  # BUY | SELL
    shares: int
    price: float
    client_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "side": self.side, "shares": self.shares,
                "price": self.price, **({"client_id": self.client_id} if self.client_id else {})}


@dataclass(frozen=True)
class OrderOut:
    """What the gate did with one order intent, and the rule behind it."""

    client_id: str
    status: str  # filled | sent | pending_approval | denied | rejected | failed | ...
    rule: str | None
    reason: str
    duplicate: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"client_id": self.client_id, "status": self.status, "rule": self.rule,
                "reason": self.reason, "duplicate": self.duplicate}

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> OrderOut:
        return cls(body["client_id"], body["status"], body.get("rule"), body.get("reason", ""),
                   bool(body.get("duplicate")))

    @property
    def held(self) -> bool:
        return self.status == "pending_approval"

    @property
    def denied(self) -> bool:
        return self.status in ("denied", "rejected", "failed")
