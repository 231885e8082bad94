"""Who is calling: the bearer token, authenticated and authorised with the access policy, the
refusal recorded and alerted exactly as on the command line."""

from __future__ import annotations

from engine.access.authorise import AccessDenied, Actor, authorise
from engine.access.journal import record_allowed, record_refused
from engine.access.model import AccessPolicy
from engine.access.tokens import VerifiedTokens, from_token
from engine.audit.store import AuditStore
from engine.service.errors import ApiError
from engine.service.sessions import CSRF_HEADER, SAFE_METHODS, Session, csrf_ok
from engine.timeutil import utc_now

#: Reading the state, the queue, decisions and policies: any person or service account the
#: access policy names (no action of the policy is needed, but anonymous callers get nothing).
READ = "read"


def actor_for(store: AuditStore, access: AccessPolicy, header: str | None, action: str,
              target: str | None = None, *, verified: VerifiedTokens | None = None,
              session: Session | None = None, csrf: str | None = None,
              method: str = "GET") -> Actor:
    """The authenticated caller allowed to take `action`; ApiError 401 or 403 otherwise.
    The caller is the bearer token's holder or, without a token, the person of a dashboard
    `session`, whose requests that change anything must carry its `csrf` token. Either way
    the same authorisation follows and is recorded. `verified`: the service's cache of tokens
    argon2 has verified."""
    if header is None and session is not None:
        if method not in SAFE_METHODS and not csrf_ok(session, csrf):
            raise ApiError(403, "csrf", "this request lacks the session's CSRF token "
                           f"(header {CSRF_HEADER})")
        actor = session.actor()
    else:
        actor = _token_actor(store, access, header, action, target, verified)
    try:
        if action == READ:
            principal = access.principal(actor.name)
            if principal is None or principal.kind != actor.kind:
                raise AccessDenied(actor.name, action, f"not named by access policy "
                                   f"{access.name} {access.version}", actor.via)
        else:
            authorise(access, actor, action)
    except AccessDenied as e:
        record_refused(store, e, target, access)
        raise ApiError(403, "forbidden", str(e)) from None
    if action != READ:
        record_allowed(store, access, actor, action, target)
    return actor


def _token_actor(store: AuditStore, access: AccessPolicy, header: str | None, action: str,
                 target: str | None, verified: VerifiedTokens | None) -> Actor:
    if header is None or not header.startswith("Bearer ") or not header[7:].strip():
        raise ApiError(401, "unauthenticated",
                       "an API token is required: Authorization: Bearer <token>")
    try:
        return from_token(store, access, header[7:].strip(), action, now=utc_now(),
                          verified=verified)
    except AccessDenied as e:
        record_refused(store, e, target, access)
        raise ApiError(401, "unauthenticated", str(e)) from None
