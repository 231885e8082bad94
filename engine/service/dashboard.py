"""The dashboard of `fugger serve` at `/`: one HTML page and its script and style, shipped in
the package (no CDN: it works with no internet), plus logging in and out. The page reads and
acts only through the /v1 API, with the session cookie this module sets, so every button meets
the same authorisation, the same gate and the same audit records as any API call."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import FileResponse, JSONResponse

from engine.access.authorise import AccessDenied
from engine.access.journal import record_allowed, record_refused
from engine.access.model import AccessPolicy
from engine.access.passwords import log_in
from engine.audit.store import AuditStore
from engine.service.body import JSON_BODY, json_body
from engine.service.errors import ApiError, bad_request
from engine.service.sessions import COOKIE, LIFETIME, Sessions
from engine.timeutil import utc_now

STATIC = Path(__file__).resolve().parent / "static"
FILES = {"app.js": "text/javascript", "app.css": "text/css"}
#: The page loads nothing from anywhere else, runs no inline script and cannot be framed.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "connect-src 'self'; img-src 'self'; form-action 'none'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
JsonBody = Annotated[Any, Depends(json_body)]


def add_dashboard(app: FastAPI, access: AccessPolicy, sessions: Sessions, store: AuditStore,
                  lock: AbstractContextManager[Any]) -> None:
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html",
                            headers=SECURITY_HEADERS)

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        if name not in FILES:
            raise ApiError(404, "not_found", f"no file {name!r}")
        return FileResponse(STATIC / name, media_type=FILES[name], headers=SECURITY_HEADERS)

    @app.post("/ui/login", openapi_extra=JSON_BODY)
    def login(request: Request, body: JsonBody) -> JSONResponse:
        """Log a person in with their password: a session cookie (HttpOnly, SameSite=Strict)
        and the session's CSRF token, which every request that changes anything sends back
        in the X-CSRF-Token header. Each attempt is recorded."""
        _same_origin(request)
        name = body.get("name") if isinstance(body, dict) else None
        password = body.get("password") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name:
            raise bad_request("name is required", "name")
        if not isinstance(password, str) or not password:
            raise bad_request("password is required", "password")
        try:
            actor = log_in(access, name, password)
        except AccessDenied as e:
            with lock:
                record_refused(store, e, "dashboard", access)
            raise ApiError(401, "unauthenticated", "unknown name or wrong password") from None
        with lock:
            record_allowed(store, access, actor, "login", "dashboard")
        sid, session = sessions.open(actor.name, utc_now())
        response = JSONResponse({"name": actor.name, "csrf": session.csrf})
        response.set_cookie(COOKIE, sid, max_age=int(LIFETIME.total_seconds()), path="/",
                            httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
        return response

    @app.get("/ui/session", include_in_schema=False)
    def current(request: Request) -> dict[str, Any]:
        """The CSRF token of the caller's session (readable by the dashboard's own page only:
        the service sends no CORS headers)."""
        session = sessions.get(request.cookies.get(COOKIE), utc_now())
        if session is None:
            raise ApiError(401, "unauthenticated", "not logged in")
        return {"name": session.name, "csrf": session.csrf}

    @app.post("/ui/logout", include_in_schema=False)
    def logout(request: Request) -> Response:
        _same_origin(request)
        sessions.close(request.cookies.get(COOKIE))
        response = JSONResponse({"ok": True})
        response.delete_cookie(COOKIE, path="/")
        return response


def _same_origin(request: Request) -> None:
    """Logging in or out from a page of another site is refused (a browser always sends
    Origin on a cross-site POST); the JSON body already needs a CORS preflight it never
    gets."""
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise ApiError(403, "forbidden", "a request from another site")
