"""The approval queue, kept in the audit store so a restart loses nothing.

An item is requested once (kind `approval_requested`, naming who requested it and how many
distinct people must approve) and decided once (kind `approval_decided`: approved, rejected or
expired). Each approval is its own record (kind `approval_given`: who, when, why, and the exact
order approved); the one that completes the quorum also decides the item, in the same write
transaction, so concurrent approvals reach a quorum at most once. The requester never counts
towards it: four eyes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.access.model import SYSTEM
from engine.audit.store import AuditStore, Record
from engine.execution.records import ORDER
from engine.timeutil import format_utc, parse_utc

REQUESTED = "approval_requested"
GIVEN = "approval_given"
DECIDED = "approval_decided"


class ApprovalError(Exception):
    """An approval that cannot be taken: unknown item, no name, already decided, expired."""


@dataclass(frozen=True)
class ApprovalItem:
    item_id: str
    symbol: str
    side: str
    shares: int
    price: float
    rule: str
    decision_id: str
    requested_at: str
    expires_at: str
    outcome: str | None = None  # approved | rejected | expired
    decided_by: str | None = None
    decided_at: str | None = None
    reason: str = ""
    #: Distinct people who must approve, and who requested the order (never one of them).
    approvers_required: int = 1
    requested_by: str = SYSTEM

    @property
    def pending(self) -> bool:
        return self.outcome is None

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def request(store: AuditStore, *, item_id: str, symbol: str, side: str, shares: int,
            price: float, rule: str, decision_id: str, requested_at: datetime,
            ttl_seconds: float, context: dict[str, Any] | None = None, approvers: int = 1,
            requested_by: str = SYSTEM) -> ApprovalItem | None:
    """Queue an order for `approvers` distinct people other than `requested_by`; None when
    the same item is already queued."""
    if approvers < 1:
        raise ValueError(f"an item needs at least one approver, not {approvers}")
    expires = datetime.fromtimestamp(requested_at.timestamp() + ttl_seconds,
                                     tz=requested_at.tzinfo)
    body = {"item_id": item_id, "symbol": symbol, "side": side, "shares": shares,
            "price": price, "rule": rule, "decision_id": decision_id,
            "requested_at": format_utc(requested_at), "expires_at": format_utc(expires),
            "summary": f"{side} {shares} {symbol} waits for approval ({rule})"
                       + (f" by {approvers} people" if approvers > 1 else ""),
            **(context or {}), "approvers_required": approvers, "requested_by": requested_by}
    rec = store.append_once(REQUESTED, item_id, body, unless=(REQUESTED,))
    return _item(body) if rec else None


def decide(store: AuditStore, item_id: str, *, outcome: str, by: str, reason: str = "",
           now: datetime) -> ApprovalItem:
    """Approve or reject a pending item as person `by`, with a reason. One rejection decides
    it; an approval counts once per person, and decides it when the quorum is reached."""
    if outcome not in ("approved", "rejected"):
        raise ValueError(f"unknown outcome {outcome!r}")
    if not by.strip():
        raise ApprovalError("an approval needs the name of the person taking it (--by)")
    if not reason.strip():
        raise ApprovalError(f"a person who {'approves' if outcome == 'approved' else 'rejects'}"
                            " an order says why (--reason)")
    item = get(store, item_id)
    if item is None:
        raise ApprovalError(f"no approval item {item_id!r}")
    if not item.pending:
        raise ApprovalError(f"item {item_id} was already {item.outcome} by {item.decided_by} "
                            f"at {item.decided_at}")
    if parse_utc(item.expires_at) <= now:
        expire_due(store, now)
        raise ApprovalError(f"item {item_id} expired at {item.expires_at}; it was rejected "
                            "automatically")
    if outcome == "approved" and by == item.requested_by:
        raise ApprovalError(f"{by} requested item {item_id} and cannot approve it: another "
                            "person must (four eyes)")
    if outcome == "rejected":
        decided = _close(store, item, outcome=outcome, by=by, reason=reason, now=now)
        if decided is None:
            latest = get(store, item_id)
            who = f" by {latest.decided_by}" if latest and latest.decided_by else ""
            raise ApprovalError(f"item {item_id} was decided{who} a moment ago")
        return decided
    store.append_checked(item_id, lambda rows: _vote(rows, item, by, reason, now))
    latest = get(store, item_id)
    assert latest is not None
    return latest


def approvals_of(store: AuditStore, item_id: str) -> list[dict[str, Any]]:
    """Every approval given to an item, in the order given."""
    return [r.body for r in store.find(item_id) if r.kind == GIVEN]


def _vote(rows: list[Record], item: ApprovalItem, by: str, reason: str,
          now: datetime) -> list[tuple[str, str, dict[str, Any]]]:
    """The records of one approval, made from the item's records as committed (inside the
    store's write transaction): the approval, and the decision when it completes the
    quorum."""
    done = next((r.body for r in rows if r.kind == DECIDED), None)
    if done is not None:
        raise ApprovalError(f"item {item.item_id} was already {done['outcome']} by "
                            f"{done.get('by')} at {done.get('at')}")
    given = [str(r.body["by"]) for r in rows if r.kind == GIVEN]
    if by in given:
        raise ApprovalError(f"{by} has already approved item {item.item_id}: the other "
                            "approvals must come from other people")
    at = format_utc(now)
    count = len(given) + 1
    order = {"symbol": item.symbol, "side": item.side, "shares": item.shares,
             "price": item.price}
    records: list[tuple[str, str, dict[str, Any]]] = [(GIVEN, item.item_id, {
        "item_id": item.item_id, "by": by, "at": at, "reason": reason, "order": order,
        "count": count, "required": item.approvers_required,
        "summary": f"approval {count} of {item.approvers_required} by {by}: {reason}"})]
    if count >= item.approvers_required:
        names = [*given, by]
        records.append((DECIDED, item.item_id, {
            "item_id": item.item_id, "outcome": "approved", "by": by, "approvers": names,
            "reason": reason, "at": at, "order": order,
            "summary": f"approved by {', '.join(names)}: {reason}"}))
    return records


def settle(store: AuditStore, item_id: str, *, outcome: str, by: str, reason: str,
           now: datetime) -> ApprovalItem | None:
    """Decide an item by a declared rule of a replay (no person, no quorum); None when it
    was decided already. Never reached from the command line."""
    item = get(store, item_id)
    if item is None or not item.pending:
        return None
    return _close(store, item, outcome=outcome, by=by, reason=reason, now=now)


def expire_due(store: AuditStore, now: datetime,
               run_id: str | object | None = ...,
               queue: ApprovalQueue | None = None) -> list[ApprovalItem]:
    """Reject, as expired, every pending item past its time-to-live."""
    queue = queue or ApprovalQueue(store)
    out = []
    for item in queue.pending(run_id):
        if parse_utc(item.expires_at) <= now:
            expired = _close(store, item, outcome="expired", by=SYSTEM,
                             reason=f"not decided before {item.expires_at}", now=now)
            if expired is not None:
                out.append(expired)
    return out


def _close(store: AuditStore, item: ApprovalItem, *, outcome: str, by: str, reason: str,
           now: datetime) -> ApprovalItem | None:
    """Decide `item` once. A rejection or an expiry is also the end of that order in the
    execution log, written in the same transaction; None when someone decided it first."""
    at = format_utc(now)
    summary = ("expired unapproved" if outcome == "expired"
               else f"{outcome} by {by}" + (f": {reason}" if reason else ""))
    records: list[tuple[str, str, dict[str, Any]]] = [(DECIDED, item.item_id, {
        "item_id": item.item_id, "outcome": outcome, "by": by, "reason": reason, "at": at,
        "summary": summary})]
    if outcome != "approved":
        request = next((r.body for r in store.find(item.item_id) if r.kind == REQUESTED), {})
        records.append((ORDER, item.item_id, {
            "run_id": request.get("run_id"), "ts": at, "client_id": item.item_id,
            "symbol": item.symbol, "side": item.side, "shares": item.shares,
            "price": item.price, "status": outcome, "rule": item.rule, "reason": reason,
            "decision_id": item.decision_id,
            "summary": f"{item.side} {item.shares} {item.symbol}: {outcome} by {by}"}))
    if not store.append_many(records, unless=(item.item_id, (DECIDED,))):
        return None
    return get(store, item.item_id)


def get(store: AuditStore, item_id: str) -> ApprovalItem | None:
    rows = store.find(item_id)
    req = next((r for r in rows if r.kind == REQUESTED), None)
    if req is None:
        return None
    item = _item(req.body)
    dec = next((r for r in rows if r.kind == DECIDED), None)
    if dec is not None:
        item = _decided(item, dec.body)
    return item


def pending(store: AuditStore, run_id: str | object | None = ...) -> list[ApprovalItem]:
    """Undecided items, oldest first; with `run_id`, only that run's (None: the live system)."""
    return ApprovalQueue(store).pending(run_id)


class ApprovalQueue:
    """A projection of the queue, caught up from the store by record number, so a long run
    reads each record once. The store stays the truth: deciding goes through append-once."""

    KINDS = (REQUESTED, DECIDED, ORDER)

    def __init__(self, store: AuditStore) -> None:
        self.store = store
        self._seq = 0
        self._items: dict[str, ApprovalItem] = {}
        self._runs: dict[str, object] = {}
        self._used: set[str] = set()
        # Kept beside the items so a long run never rescans every item it ever queued.
        self._open: dict[str, None] = {}
        self._approved: dict[str, None] = {}
        self._rank: dict[str, int] = {}

    def refresh(self) -> None:
        self._seq, rows = self.store.records_since(self._seq, self.KINDS)
        for r in rows:
            if r.kind == REQUESTED:
                self._items[r.ref] = _item(r.body)
                self._runs[r.ref] = r.body.get("run_id")
                self._rank.setdefault(r.ref, len(self._rank))
                self._open[r.ref] = None
            elif r.kind == DECIDED and r.ref in self._items:
                self._items[r.ref] = _decided(self._items[r.ref], r.body)
                self._open.pop(r.ref, None)
                if self._items[r.ref].outcome == "approved" and r.ref not in self._used:
                    self._approved[r.ref] = None
            elif r.kind == ORDER and r.body.get("status") != "pending_approval":
                self._used.add(r.ref)
                self._approved.pop(r.ref, None)

    def items(self) -> list[ApprovalItem]:
        """Every item ever queued, decided or not, oldest first."""
        self.refresh()
        return list(self._items.values())

    def pending(self, run_id: str | object | None = ...) -> list[ApprovalItem]:
        self.refresh()
        return [self._items[k] for k in self._open
                if run_id is ... or self._runs.get(k) == run_id]

    def approved_unsent(self, run_id: str | object | None = ...) -> list[ApprovalItem]:
        """Approved items whose order has not gone through the gate again yet."""
        self.refresh()
        return [self._items[k] for k in sorted(self._approved, key=self._rank.__getitem__)
                if run_id is ... or self._runs.get(k) == run_id]


def _decided(item: ApprovalItem, body: dict[str, Any]) -> ApprovalItem:
    return ApprovalItem(**{**item.to_json(), "outcome": body["outcome"],
                           "decided_by": body.get("by"), "decided_at": body.get("at"),
                           "reason": body.get("reason", "")})


def _item(body: dict[str, Any]) -> ApprovalItem:
    return ApprovalItem(item_id=body["item_id"], symbol=body["symbol"], side=body["side"],
                        shares=int(body["shares"]), price=float(body["price"]),
                        rule=body["rule"], decision_id=body["decision_id"],
                        requested_at=body["requested_at"], expires_at=body["expires_at"],
                        approvers_required=int(body.get("approvers_required", 1)),
                        requested_by=str(body.get("requested_by", SYSTEM)))
