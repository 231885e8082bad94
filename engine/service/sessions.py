"""Dashboard sessions: after a person logs in with their password, a random session id in an
HttpOnly, SameSite=Strict cookie stands for them until it expires or they log out. Every
request that changes anything must also carry the session's CSRF token in a header, which a
page of another site can neither read nor send."""

from __future__ import annotations

import hmac
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from engine.access.authorise import Actor

COOKIE = "fugger_session"
CSRF_HEADER = "x-csrf-token"
LIFETIME = timedelta(hours=8)
#: Methods that never change anything; every other needs the CSRF token.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Session:
    name: str
    csrf: str
    expires: datetime

    def actor(self) -> Actor:
        return Actor(self.name, "person", "dashboard session")


class Sessions:
    """The sessions of this process (a restart logs everyone out)."""

    def __init__(self, max_sessions: int = 1000) -> None:
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._max = max_sessions

    def open(self, name: str, now: datetime) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        session = Session(name, secrets.token_urlsafe(32), now + LIFETIME)
        with self._lock:
            self._drop_expired(now)
            if len(self._by_id) >= self._max:
                oldest = min(self._by_id, key=lambda k: self._by_id[k].expires)
                del self._by_id[oldest]
            self._by_id[sid] = session
        return sid, session

    def get(self, sid: str | None, now: datetime) -> Session | None:
        if not sid:
            return None
        with self._lock:
            session = self._by_id.get(sid)
            if session is not None and session.expires <= now:
                del self._by_id[sid]
                return None
            return session

    def close(self, sid: str | None) -> None:
        with self._lock:
            self._by_id.pop(sid or "", None)

    def _drop_expired(self, now: datetime) -> None:
        for k in [k for k, s in self._by_id.items() if s.expires <= now]:
            del self._by_id[k]


def csrf_ok(session: Session, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(session.csrf.encode(),
                                                         presented.encode())
