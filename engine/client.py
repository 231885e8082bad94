"""A typed client of `fugger serve`: what a bot needs to decide, trade and read the state.

    with FuggerClient("http://127.0.0.1:8700", token) as api:
        decisions = api.decide([snapshot])
        outcomes = api.submit([OrderIn("SPY", "BUY", 10, 512.3)])

Every refusal of the service (4xx, 5xx) raises ApiCallError with its code, message and field.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from engine.order_messages import OrderIn, OrderOut

__all__ = ["ApiCallError", "DecisionOut", "FuggerClient", "OrderIn", "OrderOut"]


class ApiCallError(Exception):
    """The service refused a call: HTTP status, error code, message and the field at fault."""

    def __init__(self, status: int, code: str, message: str, field: str | None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        super().__init__(f"{status} {code}: {message}" + (f" ({field})" if field else ""))


@dataclass(frozen=True)
class DecisionOut:
    decision_id: str
    symbol: str | None
    action: str
    rule: str | None
    record: dict[str, Any]

    @property
    def all_clear(self) -> bool:
        return self.action == "allow"


class FuggerClient:
    def __init__(self, base_url: str, token: str, *, timeout_s: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s,
                                  headers={"Authorization": f"Bearer {token}"},
                                  transport=transport)

    def __enter__(self) -> FuggerClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def decide(self, snapshots: list[dict[str, Any]]) -> list[DecisionOut]:
        """Each snapshot decided (and recorded) by the service, in order."""
        body = self._call("POST", "/v1/decide", {"snapshots": snapshots})
        return [DecisionOut(d["decision_id"], d.get("symbol"), d["action"],
                            (d.get("deciding_rule") or {}).get("rule"), d)
                for d in body["decisions"]]

    def submit(self, orders: list[OrderIn]) -> list[OrderOut]:
        """Each order through the gate: sent, held for a person, or denied (with its rule)."""
        body = self._call("POST", "/v1/orders", {"orders": [o.to_json() for o in orders]})
        return [OrderOut.from_json(o) for o in body["orders"]]

    def state(self) -> dict[str, Any]:
        return self._call("GET", "/v1/state")

    def orders(self, limit: int = 100) -> list[dict[str, Any]]:
        """The latest step of the most recent orders, newest first."""
        return list(self._call("GET", f"/v1/orders?limit={limit}")["orders"])

    def approvals(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/approvals")["approvals"])

    def approve(self, item_id: str, reason: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/approvals/{item_id}/approve", {"reason": reason})

    def reject(self, item_id: str, reason: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/approvals/{item_id}/reject", {"reason": reason})

    def resume(self, reason: str) -> dict[str, Any]:
        return self._call("POST", "/v1/resume", {"reason": reason})

    def why(self, decision_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/decisions/{decision_id}/why")

    def health(self) -> bool:
        return self._http.get("/v1/health").status_code == 200

    def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        r = self._http.request(method, path, json=body)
        try:
            doc = r.json()
        except ValueError:
            doc = None
        if r.status_code >= 400:
            err = doc.get("error") if isinstance(doc, dict) else None
            if not isinstance(err, dict):
                err = {"code": "http_error", "message": r.text[:200], "field": None}
            raise ApiCallError(r.status_code, str(err.get("code")), str(err.get("message")),
                               err.get("field"))
        if not isinstance(doc, dict):
            raise ApiCallError(r.status_code, "bad_response", "the service did not answer "
                               "with a JSON object", None)
        return doc
