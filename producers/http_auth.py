"""Who is calling: named API keys (Bearer, constant-time compare) or an admin-page session + CSRF.

Keys are compared with `hmac.compare_digest` against every configured key, and neither a key nor
a session cookie is ever logged; only the key's name travels on (logs, audit, responses).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import SecretStr

from producers.http_errors import ApiError
from producers.http_routes import Route
from producers.http_sessions import CSRF_HEADER, SESSION_COOKIE, Session
from producers.http_state import ServiceState, state_of

__all__ = [
    "PRINCIPAL",
    "SESSION",
    "KeyRing",
    "Principal",
    "Role",
    "admin_session",
    "authenticate",
]

log = logging.getLogger("eventq.http")

Role = Literal["producer", "admin"]


@dataclass(frozen=True)
class Principal:
    """The caller: the configured name of its key, its role, and how it authenticated."""

    name: str
    role: Role
    via: Literal["bearer", "session"]


PRINCIPAL = web.RequestKey("principal", Principal)
SESSION = web.RequestKey("session", Session)


class KeyRing:
    """The configured keys by name; admin keys also pass for producer routes."""

    def __init__(
        self, producer_keys: Mapping[str, SecretStr], admin_keys: Mapping[str, SecretStr]
    ) -> None:
        entries: list[tuple[str, Role, bytes]] = []
        for name, key in admin_keys.items():
            entries.append((name, "admin", key.get_secret_value().encode()))
        for name, key in producer_keys.items():
            entries.append((name, "producer", key.get_secret_value().encode()))
        self._entries = entries
        self._admin_names = frozenset(admin_keys)

    def identify(self, presented: str) -> tuple[str, Role] | None:
        """Return (name, role) of the key `presented`, or None; compares against every key."""
        token = presented.encode("utf-8", "replace")
        found: tuple[str, Role] | None = None
        for name, role, key in self._entries:
            if hmac.compare_digest(token, key) and found is None:
                found = (name, role)
        return found

    @property
    def empty(self) -> bool:
        """Return True when no key at all is configured (every call would be refused)."""
        return not self._entries

    def is_admin(self, name: str) -> bool:
        """Return True while an admin key named `name` is configured."""
        return name in self._admin_names


def _unauthorized(message: str) -> ApiError:
    return ApiError(
        401, "unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="eventq"'}
    )


def _bearer(header: str, keyring: KeyRing) -> Principal:
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("expected the header Authorization: Bearer <key>")
    found = keyring.identify(token)
    if found is None:
        log.info("rejected an unknown API key")
        raise _unauthorized("unknown API key")
    name, role = found
    return Principal(name, role, "bearer")


async def admin_session(request: web.Request, state: ServiceState) -> Session | None:
    """Return the request's session when its cookie is live and its key is still an admin's."""
    session = await state.sessions.get(request.cookies.get(SESSION_COOKIE, ""))
    if session is None or not state.keyring.is_admin(session.keyName):
        return None
    return session


async def _session(request: web.Request, state: ServiceState, route: Route) -> Principal:
    session = await admin_session(request, state)
    if session is None:
        raise _unauthorized("no admin session (expired or logged out); log in again")
    if route.unsafe and not session.csrf_matches(request.headers.get(CSRF_HEADER)):
        log.warning("refused a session request without a valid CSRF token")
        raise ApiError(403, "csrf_failed", f"missing or wrong {CSRF_HEADER} header")
    request[SESSION] = session
    return Principal(session.keyName, "admin", "session")


async def _principal(request: web.Request, state: ServiceState, route: Route) -> Principal:
    if state.keyring.empty:
        raise _unauthorized(
            "this service has no API keys configured: set EVENTQ_API_KEYS (producers) and "
            "EVENTQ_ADMIN_API_KEYS (admins), or use the ones `eventq run` prints"
        )
    header = request.headers.get("Authorization")
    if header is not None and route.access != "session":
        return _bearer(header, state.keyring)
    if SESSION_COOKIE in request.cookies:
        return await _session(request, state, route)
    raise _unauthorized("missing credentials: send Authorization: Bearer <key>")


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Let the request through only with the credentials its route needs (401, 403 otherwise)."""
    state = state_of(request)
    route = state.route_for(request)
    if route is None or route.access in ("public", "page"):
        return await handler(request)
    principal = await _principal(request, state, route)
    if route.access == "admin" and principal.role != "admin":
        raise ApiError(403, "forbidden", "this route needs an admin key")
    request[PRINCIPAL] = principal
    return await handler(request)
