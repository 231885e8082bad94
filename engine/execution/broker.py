"""The broker adapter interface: what every broker (paper, Alpaca, IBKR) implements.

Idempotency is part of the contract: `submit` with a `client_id` the broker has already
seen returns the existing order and never creates or fills a second one, so resubmitting
after a crash or a timeout is always safe.

A rejection is not an exception: it is a normal `BrokerOrder` whose status is
`OrderStatus.REJECTED` and whose `reason` says why. Exceptions are kept for failures where
the outcome is unknown (`BrokerError`), which a retry with the same `client_id` resolves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable


class Side(StrEnum):
    """Direction of an order."""

    BUY = "BUY"
    SELL = "SELL"


class OrderStatus(StrEnum):
    """Lifecycle state of an order at the broker."""

    OPEN = "open"
    FILLED = "filled"
    REJECTED = "rejected"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        """Whether the order can no longer change."""
        return self is not OrderStatus.OPEN


class BrokerError(Exception):
    """A transient failure (network, timeout, locked store): the outcome is unknown.

    Retrying with the same `client_id` is safe because `submit` is idempotent.
    """


@dataclass(frozen=True)
class OrderRequest:
    """An order to send; `price` is the price it is sent at (the market's reference price
    for a limit order). With `limit_price` it is a limit order: it fills only at that price or
    better, and rests open until the market crosses it."""

    client_id: str
    symbol: str
    side: Side
    shares: int
    price: float
    limit_price: float | None = None


@dataclass(frozen=True)
class BrokerOrder:
    """The broker's view of one order; times are UTC ISO-8601 strings ending in `Z`."""

    client_id: str
    broker_order_id: str
    symbol: str
    side: Side
    shares: int
    status: OrderStatus
    fill_price: float | None
    commission: float
    reason: str
    submitted_at: str
    filled_at: str | None


def crosses(side: Side, market: float, limit: float) -> bool:
    """Whether a limit order on `side` at `limit` can fill at `market`."""
    return market <= limit if side is Side.BUY else market >= limit


@dataclass(frozen=True)
class Position:
    """Shares held in one symbol."""

    symbol: str
    shares: int


@runtime_checkable
class Broker(Protocol):
    """The operations the engine needs from a broker."""

    def submit(self, order: OrderRequest) -> BrokerOrder:
        """Send `order`; an already seen `client_id` returns the existing order unchanged."""
        ...

    def cancel(self, client_id: str) -> BrokerOrder:
        """Cancel an open order; a final order is returned unchanged."""
        ...

    def order(self, client_id: str) -> BrokerOrder | None:
        """The order sent under `client_id`, or None when there is none."""
        ...

    def open_orders(self) -> list[BrokerOrder]:
        """Orders not yet filled, rejected or cancelled, oldest first."""
        ...

    def positions(self) -> dict[str, int]:
        """Shares held per symbol; symbols with no shares are left out."""
        ...

    def cash(self) -> float:
        """Cash available, in account currency."""
        ...


@runtime_checkable
class RestingBroker(Protocol):
    """A broker the engine feeds prices to, so its resting (open) orders fill when the market
    reaches them: the paper broker. A real broker fills on its own."""

    def fill_open(self, prices: Mapping[str, float]) -> list[BrokerOrder]:
        """Fill what the prices reach; returns the orders that changed."""
        ...
