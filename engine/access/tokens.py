"""API tokens for programs: shown once, kept only as an argon2 hash, revocable, expiring.

A token is `fgt_<id>_<secret>`. The audit store keeps its id, holder, expiry and the argon2
hash of the secret (kind `token_created`), and its revocation (kind `token_revoked`): the
store says who could act as whom, and from when to when, and never holds a usable token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from engine.access.authorise import AccessDenied, Actor
from engine.access.identity import check_claim
from engine.access.model import AccessPolicy
from engine.audit.store import AuditStore, Record
from engine.timeutil import format_utc, parse_utc

CREATED = "token_created"
REVOKED = "token_revoked"
MAX_TTL = timedelta(days=366)
_TOKEN = re.compile(r"^fgt_(tk-[0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_HASHER = PasswordHasher()


class TokenError(Exception):
    """A token that cannot be created, found or revoked."""


@dataclass(frozen=True)
class TokenInfo:
    token_id: str
    holder: str
    holder_kind: str
    created_by: str
    created_at: str
    expires_at: str
    revoked_by: str | None = None
    revoked_at: str | None = None

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if parse_utc(self.expires_at) <= now else "active"


def create(store: AuditStore, access: AccessPolicy, holder: str, *, by: str,
           ttl: timedelta, now: datetime) -> tuple[str, TokenInfo]:
    """A new token for `holder` (a person or service account of the policy): the token text,
    to be shown once, and what the store keeps of it."""
    principal = access.principal(holder)
    if principal is None:
        raise TokenError(f"'{holder}' is not a person or service account of access policy "
                         f"{access.path}")
    if not timedelta(0) < ttl <= MAX_TTL:
        raise TokenError(f"a token expires within {MAX_TTL.days} days")
    token_id = f"tk-{secrets.token_hex(8)}"
    secret = secrets.token_urlsafe(32)
    info = TokenInfo(token_id, holder, principal.kind, by, format_utc(now),
                     format_utc(now + ttl))
    store.append(CREATED, token_id, {
        "token_id": token_id, "holder": holder, "holder_kind": principal.kind,
        "created_by": by, "created_at": info.created_at, "expires_at": info.expires_at,
        "hash": _HASHER.hash(secret),
        "summary": f"token {token_id} for {holder} by {by}, expires {info.expires_at}"})
    return f"fgt_{token_id}_{secret}", info


def revoke(store: AuditStore, token_id: str, *, by: str, now: datetime) -> TokenInfo:
    info = get(store, token_id)
    if info is None:
        raise TokenError(f"no token {token_id!r}")
    at = format_utc(now)
    if store.append_once(REVOKED, token_id, {"token_id": token_id, "by": by, "at": at,
                                             "summary": f"token {token_id} revoked by {by}"},
                         unless=(REVOKED,)) is None:
        raise TokenError(f"token {token_id} was already revoked")
    return TokenInfo(**{**info.__dict__, "revoked_by": by, "revoked_at": at})


def get(store: AuditStore, token_id: str) -> TokenInfo | None:
    return _info(store.find(token_id))


def listing(store: AuditStore) -> list[TokenInfo]:
    out = []
    for r in store.iter_records(CREATED):
        info = get(store, r.ref)
        if info is not None:
            out.append(info)
    return out


class VerifiedTokens:
    """Tokens whose secret argon2 has verified in this process, so a long-running service pays
    for the hash once per token, not on every request. A token is kept under an HMAC-SHA256
    of its full text with a key made at random for this process: the table holds neither a
    token nor anything that can be checked against one elsewhere. Only what argon2 proved is
    cached (who holds the token, and until when); expiry is checked against `now` and
    revocation read from the store on every use, so a revoked token is refused at once."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._key = secrets.token_bytes(32)
        self._verified: dict[bytes, TokenInfo] = {}
        self._max = max_entries

    def _digest(self, token: str) -> bytes:
        return hmac.new(self._key, token.encode("utf-8"), hashlib.sha256).digest()

    def get(self, token: str) -> TokenInfo | None:
        return self._verified.get(self._digest(token))

    def put(self, token: str, info: TokenInfo) -> None:
        if len(self._verified) >= self._max:
            self._verified.clear()  # rare, and only costs a fresh verification each
        self._verified[self._digest(token)] = info

    def forget(self, token: str) -> None:
        self._verified.pop(self._digest(token), None)


def from_token(store: AuditStore, access: AccessPolicy, token: str, action: str, *,
               claimed: str = "", now: datetime,
               verified: VerifiedTokens | None = None) -> Actor:
    """The person or service account a token stands for; AccessDenied (with the reason)
    for a malformed, unknown, revoked, expired or wrong token, or a holder the policy no
    longer names. With `verified`, a token whose secret was verified before is not hashed
    again (its revocation and expiry are still checked now)."""
    m = _TOKEN.match(token.strip())
    if m is None:
        raise AccessDenied(claimed or "token:malformed", action, "the token is malformed",
                           "token")
    token_id, secret = m.group(1), m.group(2)
    who = claimed or f"token:{token_id}"
    info = verified.get(token.strip()) if verified is not None else None
    if info is not None:
        # Read on every use (an indexed look-up of this token's few records): a revocation
        # by any process takes effect on the next request.
        gone = next((r for r in store.find(token_id) if r.kind == REVOKED), None)
        if gone is not None:
            verified.forget(token.strip())  # type: ignore[union-attr]
            info = _with_revocation(info, gone.body)
    else:
        rows = store.find(token_id)
        info = _info(rows)
        if info is None:
            raise AccessDenied(who, action, f"no token {token_id}", f"token {token_id}")
        hashed = next(str(r.body["hash"]) for r in rows if r.kind == CREATED)
        try:
            _HASHER.verify(hashed, secret)
        except (VerificationError, InvalidHashError):
            raise AccessDenied(who, action, f"wrong secret for token {token_id}",
                               f"token {token_id}") from None
        if verified is not None and info.revoked_at is None:
            verified.put(token.strip(), info)
    state = info.state(now)
    if state != "active":
        when = info.revoked_at if state == "revoked" else info.expires_at
        raise AccessDenied(info.holder, action, f"token {token_id} is {state} (since {when})",
                           f"token {token_id}")
    actor = Actor(info.holder, info.holder_kind, f"token {token_id}")
    check_claim(actor, action, claimed)
    return actor


def _with_revocation(info: TokenInfo, gone: dict[str, Any]) -> TokenInfo:
    return replace(info, revoked_by=gone["by"], revoked_at=gone["at"])


def _info(rows: list[Record]) -> TokenInfo | None:
    made = next((r.body for r in rows if r.kind == CREATED), None)
    if made is None:
        return None
    info = TokenInfo(made["token_id"], made["holder"], made["holder_kind"],
                     made["created_by"], made["created_at"], made["expires_at"])
    gone = next((r.body for r in rows if r.kind == REVOKED), None)
    return _with_revocation(info, gone) if gone else info
