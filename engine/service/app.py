"""The HTTP API under /v1: JSON in and out, every error as {"error": {...}}, every route but
/v1/health and /metrics behind an API token and the roles of the access policy."""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from engine.access.authorise import Actor
from engine.access.model import AccessPolicy
from engine.access.tokens import VerifiedTokens
from engine.audit.why import explain_record, rebuild
from engine.decision import Decision
from engine.execution import approvals
from engine.execution import kill as killing
from engine.execution import state as trading
from engine.execution.approvals import ApprovalItem
from engine.monitoring.alerting.acks import acknowledge, acknowledgements
from engine.order_messages import OrderIn, OrderOut
from engine.service.auth import READ, actor_for
from engine.service.body import JSON_BODY, json_body
from engine.service.dashboard import add_dashboard
from engine.service.errors import ApiError, bad_request, conflict, not_found
from engine.service.metrics import Metrics
from engine.service.runtime import Runtime
from engine.service.sessions import COOKIE, CSRF_HEADER, Sessions
from engine.timeutil import parse_utc, utc_now
from engine.tooling.diff import diff_sets

MAX_BATCH = 10_000
ORDER_FIELDS = ("client_id", "ts", "symbol", "side", "shares", "price", "status", "rule",
                "reason")
JsonBody = Annotated[Any, Depends(json_body)]


def create_app(runtime: Runtime, access: AccessPolicy) -> FastAPI:
    app = FastAPI(title="FuggerBot decision API", version="1", openapi_url="/openapi.json",
                  docs_url=None, redoc_url=None)
    metrics = Metrics()
    store = runtime.store
    verified = VerifiedTokens()
    sessions = Sessions()

    @app.exception_handler(ApiError)
    async def api_error(_: Request, e: ApiError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return JSONResponse(bad_request(str(first.get("msg", "invalid request")), field).body(),
                            status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        return JSONResponse(ApiError(e.status_code, code, str(e.detail)).body(),
                            status_code=e.status_code)

    app.add_middleware(Timed, metrics=metrics)

    def who(request: Request, action: str, target: str | None = None) -> Actor:
        session = sessions.get(request.cookies.get(COOKIE), utc_now())
        with runtime.lock:
            return actor_for(store, access, request.headers.get("authorization"), action,
                             target, verified=verified, session=session,
                             csrf=request.headers.get(CSRF_HEADER), method=request.method)

    @app.get("/v1/me")
    def me(request: Request) -> dict[str, Any]:
        """Who the caller is and which actions the access policy allows them."""
        actor = who(request, READ)
        principal = access.principal(actor.name)
        allowed = sorted(access.actions_of(principal)) if principal else []
        return {"name": actor.name, "kind": actor.kind, "via": actor.via, "actions": allowed}

    @app.post("/v1/decide", openapi_extra=JSON_BODY)
    def decide(request: Request, body: JsonBody) -> JSONResponse:
        """One snapshot, or {"snapshots": [...]}: the decision records, each recorded in the
        audit store before the response is sent."""
        def work() -> list[Decision]:
            actor = who(request, "trade", "decide")
            return runtime.decide(_snapshots(body), requester=actor.name)
        # The caller's authorisation and the cycle's records commit in one transaction.
        made = runtime.write(work)
        for d in made:
            metrics.decisions.labels(d.action.value, d.rule or "").inc()
        # Plain JSON already: answered as it is, without the framework's encoder pass.
        return JSONResponse({"decisions": [d.to_json() for d in made]})

    @app.post("/v1/orders", openapi_extra=JSON_BODY)
    def orders(request: Request, body: JsonBody) -> dict[str, Any]:
        """Order intents through the one gate: each sent, held for a person or denied."""
        def work() -> list[OrderOut]:
            actor = who(request, "trade", "orders")
            return runtime.orders(_orders(body), requester=actor.name)
        results = runtime.write(work)
        for r in results:
            metrics.gate.labels(r.status).inc()
        return {"orders": [r.to_json() for r in results]}

    @app.get("/v1/state")
    def state(request: Request) -> dict[str, Any]:
        who(request, READ)
        with runtime.lock:
            view = trading.load(store)
            rails = runtime.rails()
            latest = {s: {"decision_id": d.decision_id, "action": d.action.value,
                          "rule": d.rule, "ts": d.ts, "rails": rails.get(s, [])}
                      for s, d in runtime.latest.items()}
        return {"trading_state": view.to_json(), "latest": latest}

    @app.post("/v1/resume", openapi_extra=JSON_BODY)
    def resume(request: Request, body: JsonBody) -> dict[str, Any]:
        def work() -> trading.StateView:
            actor = who(request, "resume", "book")
            return runtime.resume(actor.name, _reason(body))
        return {"trading_state": runtime.write(work).to_json()}

    @app.post("/v1/kill", openapi_extra=JSON_BODY)
    def kill(request: Request, body: JsonBody) -> dict[str, Any]:
        """The kill function: `{"all": true}` or `{"symbols": [...]}`, optionally `"side"`,
        and a `"reason"`; cancels the matching open orders and pending approvals and latches
        a halt for that scope until a person resumes."""
        symbols, side = _kill_scope(body)
        reason = _reason(body)

        def work() -> dict[str, Any]:
            actor = who(request, "kill", killing.scope_text(symbols, side))
            result = runtime.kill(symbols, side, actor.name, reason)
            return {"kill_id": result.kill_id, "scope": result.scope, "by": actor.name,
                    "reason": reason, "cancelled_orders": list(result.cancelled_orders),
                    "cancelled_approvals": list(result.cancelled_approvals),
                    "filled_before_cancel": list(result.filled_orders),
                    "trading_state": result.state.to_json()}
        return runtime.write(work)

    @app.get("/v1/orders")
    def orders_list(request: Request, limit: int = 100) -> dict[str, Any]:
        """The latest step of the most recent orders, newest first."""
        who(request, READ)
        with runtime.lock:
            rows = store.records("order", limit=max(1, min(limit, 1000)) * 4)
        latest: dict[str, dict[str, Any]] = {}
        for r in rows:
            latest.setdefault(r.ref, {k: r.body.get(k) for k in ORDER_FIELDS})
        return {"orders": list(latest.values())[:limit]}

    @app.get("/v1/decisions")
    def decisions_list(request: Request, symbol: str | None = None,
                       action: str | None = None, rule: str | None = None,
                       since: str | None = None, until: str | None = None,
                       limit: int = 100) -> dict[str, Any]:
        """Recent decisions, newest first, filtered by symbol, action, deciding rule and time
        (ISO-8601 UTC: decided at or after `since`, at or before `until`)."""
        who(request, READ)
        out: list[dict[str, Any]] = []
        with runtime.lock:
            for r in store.iter_records("decision", newest_first=True):
                d = r.body.get("decision", {})
                if (since is not None and str(d.get("ts", "")) < since) or \
                        (until is not None and str(d.get("ts", "")) > until):
                    continue
                if (symbol and d.get("symbol") != symbol) or \
                        (action and d.get("action") != action) or \
                        (rule and (d.get("deciding_rule") or {}).get("rule") != rule):
                    continue
                out.append({"decision_id": d.get("decision_id"), "ts": d.get("ts"),
                            "symbol": d.get("symbol"), "action": d.get("action"),
                            "rule": (d.get("deciding_rule") or {}).get("rule")})
                if len(out) >= max(1, min(limit, 1000)):
                    break
        return {"decisions": out}

    @app.get("/v1/approvals")
    def approvals_list(request: Request) -> dict[str, Any]:
        """The queue, oldest first; each item with who has approved it so far (four eyes:
        `approvers_required` distinct people other than `requested_by`)."""
        who(request, READ)
        items = runtime.pending()
        with runtime.lock:
            given = {i.item_id: [{"by": b.get("by"), "at": b.get("at")}
                                 for b in approvals.approvals_of(store, i.item_id)]
                     for i in items}
        return {"approvals": [{**_item(i), "approvals": given[i.item_id]} for i in items]}

    @app.post("/v1/approvals/{item_id}/approve", openapi_extra=JSON_BODY)
    def approve(item_id: str, request: Request,
                body: JsonBody) -> dict[str, Any]:
        return _item(runtime.write(lambda: runtime.decide_approval(
            item_id, "approved", who(request, "approve", item_id).name, _reason(body))))

    @app.post("/v1/approvals/{item_id}/reject", openapi_extra=JSON_BODY)
    def reject(item_id: str, request: Request,
               body: JsonBody) -> dict[str, Any]:
        return _item(runtime.write(lambda: runtime.decide_approval(
            item_id, "rejected", who(request, "reject", item_id).name, _reason(body))))

    @app.get("/v1/alerts")
    def alerts(request: Request, limit: int = 100) -> dict[str, Any]:
        """The latest alerts, oldest first, each with its acknowledgement (or null)."""
        who(request, READ)
        with runtime.lock:
            rows = deque(store.iter_records("alert"), maxlen=max(1, min(limit, 1000)))
            acks = acknowledgements(store)
        return {"alerts": [{**r.body, "acknowledged": acks.get(r.ref)} for r in rows]}

    @app.post("/v1/alerts/{alert_id}/ack", openapi_extra=JSON_BODY)
    def ack(alert_id: str, request: Request, body: JsonBody) -> dict[str, Any]:
        """Acknowledge an alert: anyone the access policy names, recorded under their name;
        once per alert."""
        def work() -> dict[str, Any]:
            actor = who(request, READ)
            note = body.get("note", "") if isinstance(body, dict) else ""
            if not isinstance(note, str):
                raise bad_request("note must be text", "note")
            try:
                return acknowledge(store, alert_id, by=actor.name, via=actor.via, note=note,
                                   now=utc_now())
            except LookupError as e:
                raise not_found(str(e)) from None
            except ValueError as e:
                raise conflict(str(e)) from None
        return runtime.write(work)

    @app.get("/v1/decisions/{decision_id}")
    def decision(decision_id: str, request: Request) -> dict[str, Any]:
        who(request, READ)
        with runtime.lock:
            rows = [r for r in store.find(decision_id) if r.kind == "decision"]
        if not rows:
            raise not_found(f"no decision {decision_id!r}")
        return dict(rows[-1].body)

    @app.get("/v1/decisions/{decision_id}/why")
    def why(decision_id: str, request: Request) -> dict[str, Any]:
        who(request, READ)
        with runtime.lock:
            rows = store.find(decision_id)
            if not any(r.kind == "decision" for r in rows):
                raise not_found(f"no decision {decision_id!r}")
            try:
                return explain_record(store, rows).to_json()
            except ValueError as e:
                raise bad_request(str(e)) from None

    @app.get("/v1/policies")
    def policies(request: Request) -> dict[str, Any]:
        who(request, READ)
        with runtime.lock:
            compiled = runtime.compiled
            history = [{"hash": r.ref, "at": r.ts, "scope": r.body.get("scope"),
                        "actor": r.body.get("actor"),
                        "policies": r.body.get("policies")}
                       for r in store.iter_records("policy_activation")
                       if r.body.get("scope") == "live"]
            events = [{"kind": e.kind, "message": e.message} for e in runtime.events]
        active = None
        if compiled is not None:
            ps = compiled.policy_set
            active = {"hash": ps.hash, "policies": [{"kind": p.kind, "name": p.name,
                                                     "version": p.version, "path": p.path}
                                                    for p in ps.policies]}
        return {"active": active, "history": history, "events": events}

    @app.get("/v1/policies/diff")
    def policies_diff(request: Request, old: str, new: str) -> dict[str, Any]:
        """What changed between two activations (policy-set hashes from /v1/policies): each
        policy, rule and setting added, removed or changed (engine/tooling/diff)."""
        who(request, READ)
        with runtime.lock:
            sets = [rebuild(store.activation(h)) for h in (old, new)]
        for h, ps, field in zip((old, new), sets, ("old", "new"), strict=True):
            if ps is None:
                raise not_found(f"no activation of policy set {h!r} with valid policy text "
                                f"({field})")
        assert sets[0] is not None and sets[1] is not None
        return diff_sets(sets[0], sets[1]).to_json()

    @app.get("/v1/health")
    def health() -> JSONResponse:
        ok, why_not = runtime.healthy()
        return JSONResponse({"status": "ok" if ok else "unavailable", "reason": why_not},
                            status_code=200 if ok else 503)

    @app.get("/metrics")
    def prometheus() -> Response:
        with runtime.lock:
            metrics.set_state(trading.load(store).state)
            metrics.alerts.set(store.count("alert"))
            metrics.commits.set(store.commits)
        waiting = runtime.pending()
        metrics.approvals_waiting.set(len(waiting))
        now = utc_now()
        metrics.oldest_approval.set(max(((now - parse_utc(i.requested_at)).total_seconds()
                                         for i in waiting), default=0.0))
        metrics.reloads.set(runtime.reloads)
        metrics.reload_failures.set(runtime.reload_failures)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    add_dashboard(app, access, sessions, store, runtime.lock)
    return app


class Timed:
    """Request latency by method and route, as a plain ASGI middleware (the framework's
    decorator form wraps every response in a stream, at a cost on each request)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            route = scope.get("route")
            self.metrics.latency.labels(scope["method"], getattr(route, "path", "other")
                                        ).observe(time.perf_counter() - t0)


def _snapshots(body: Any) -> list[dict[str, Any]]:
    if isinstance(body, dict) and "snapshots" in body:
        snaps = body["snapshots"]
        if not isinstance(snaps, list) or not snaps:
            raise bad_request("snapshots must be a non-empty list of objects", "snapshots")
        if len(snaps) > MAX_BATCH:
            raise bad_request(f"at most {MAX_BATCH} snapshots a request", "snapshots")
        for n, s in enumerate(snaps):
            if not isinstance(s, dict):
                raise bad_request("each snapshot must be an object", f"snapshots.{n}")
        return snaps
    if not isinstance(body, dict):
        raise bad_request("the body must be a snapshot object or {\"snapshots\": [...]}")
    return [body]


def _orders(body: Any) -> list[OrderIn]:
    items = body.get("orders") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise bad_request("orders must be a non-empty list", "orders")
    if len(items) > MAX_BATCH:
        raise bad_request(f"at most {MAX_BATCH} orders a request", "orders")
    out = []
    for n, o in enumerate(items):
        at = f"orders.{n}"
        if not isinstance(o, dict):
            raise bad_request("each order must be an object", at)
        sym, side, shares, price = o.get("symbol"), o.get("side"), o.get("shares"), o.get("price")
        cid = o.get("client_id")
        if not isinstance(sym, str) or not sym.strip():
            raise bad_request("symbol must be a non-empty string", f"{at}.symbol")
        if side not in ("BUY", "SELL"):
            raise bad_request("side must be BUY or SELL", f"{at}.side")
        if isinstance(shares, bool) or not isinstance(shares, int) or shares <= 0:
            raise bad_request("shares must be a whole number above 0", f"{at}.shares")
        if isinstance(price, bool) or not isinstance(price, (int, float)) or \
                not math.isfinite(price) or price <= 0:
            raise bad_request("price must be a finite number above 0", f"{at}.price")
        if cid is not None and (not isinstance(cid, str) or not 1 <= len(cid) <= 64):
            raise bad_request("client_id must be a string of 1 to 64 characters",
                              f"{at}.client_id")
        out.append(OrderIn(sym, side, shares, float(price), cid))
    return out


def _kill_scope(body: Any) -> tuple[list[str], str | None]:
    """The scope of a kill: every symbol (`"all": true`) or the named ones, never both or
    neither, so a typo cannot widen or empty it; one side or both."""
    if not isinstance(body, dict):
        raise bad_request("the body must be an object", None)
    everything = body.get("all", False)
    if not isinstance(everything, bool):
        raise bad_request("all must be true or false", "all")
    raw = body.get("symbols", [])
    if not isinstance(raw, list) or not all(isinstance(x, str) and x.strip() for x in raw):
        raise bad_request("symbols must be a list of symbol names", "symbols")
    if everything == bool(raw):
        raise bad_request("name the scope: all, or one or more symbols (not both)", "symbols")
    side = body.get("side")
    if side is not None and side not in ("BUY", "SELL"):
        raise bad_request("side must be BUY or SELL", "side")
    return sorted(set(raw)), side


def _reason(body: Any) -> str:
    reason = body.get("reason") if isinstance(body, dict) else None
    if not isinstance(reason, str) or not reason.strip():
        raise bad_request("a reason is required", "reason")
    return reason


def _item(i: ApprovalItem) -> dict[str, Any]:
    return i.to_json()
