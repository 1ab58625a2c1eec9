"""Admin-page sessions in Redis: a random cookie value (never the key) and a CSRF token, with a TTL.

Redis holds only a hash of the cookie value, so reading Redis does not give a usable session.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

import redis.asyncio as aioredis
from pydantic import BaseModel, ValidationError

from eventq.keys import Keys

__all__ = ["CSRF_HEADER", "SESSION_COOKIE", "SESSION_TTL_S", "Session", "SessionStore"]

SESSION_COOKIE = "eventq_session"
CSRF_HEADER = "X-CSRF-Token"
SESSION_TTL_S = 8 * 3600
_MAX_COOKIE_CHARS = 128


class Session(BaseModel):
    """One logged-in admin: the name of the key used (never the key) and the CSRF token."""

    keyName: str
    csrfToken: str
    createdAt: float
    expiresAt: float

    def csrf_matches(self, presented: str | None) -> bool:
        """Return True when `presented` is this session's CSRF token (constant-time)."""
        if not presented:
            return False
        return hmac.compare_digest(presented.encode(), self.csrfToken.encode())


def _hash(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


class SessionStore:
    """Creates, finds and ends sessions; each expires after `ttl_s` seconds."""

    def __init__(self, client: aioredis.Redis, keys: Keys, ttl_s: int = SESSION_TTL_S) -> None:
        self._redis = client
        self._keys = keys
        self.ttl_s = ttl_s

    async def create(self, key_name: str) -> tuple[str, Session]:
        """Start a session for `key_name`; returns (cookie value, session)."""
        cookie = secrets.token_urlsafe(32)
        now = time.time()
        session = Session(
            keyName=key_name,
            csrfToken=secrets.token_urlsafe(32),
            createdAt=now,
            expiresAt=now + self.ttl_s,
        )
        await self._redis.set(
            self._keys.session(_hash(cookie)), session.model_dump_json(), ex=self.ttl_s
        )
        return cookie, session

    async def get(self, cookie: str) -> Session | None:
        """Return the live session behind a cookie value, or None."""
        if not cookie or len(cookie) > _MAX_COOKIE_CHARS:
            return None
        raw = await self._redis.get(self._keys.session(_hash(cookie)))
        if raw is None:
            return None
        try:
            return Session.model_validate_json(raw)
        except ValidationError:
            return None

    async def end(self, cookie: str) -> None:
        """End the session behind a cookie value (nothing happens for an unknown one)."""
        if cookie and len(cookie) <= _MAX_COOKIE_CHARS:
            await self._redis.delete(self._keys.session(_hash(cookie)))
