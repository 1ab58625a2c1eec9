"""Bearer-token authentication: private-app tokens, OAuth refresh tokens and access tokens."""

from __future__ import annotations

import math
import secrets
import time
from collections import Counter
from dataclasses import dataclass

from fake_hubspot.config import FakeConfig, RefreshGrant

__all__ = ["AuthFailure", "Authenticator", "Identity", "RefreshFailure", "RefreshResult"]

_BEARER = "bearer "


@dataclass(frozen=True, slots=True)
class Identity:
    """Who made a request: a private app (`app:NAME`) or an OAuth portal (`portal:ID`)."""

    name: str
    portal_id: int | None
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        """Return whether the token carries `scope` (as HubSpot: write does not imply read)."""
        return scope in self.scopes


@dataclass(frozen=True, slots=True)
class AuthFailure:
    """Why a bearer token was refused: `INVALID_AUTHENTICATION` or `EXPIRED_AUTHENTICATION`."""

    category: str
    message: str


@dataclass(frozen=True, slots=True)
class RefreshResult:
    """A freshly issued access token."""

    access_token: str
    refresh_token: str
    expires_in: int
    portal_id: int


@dataclass(frozen=True, slots=True)
class RefreshFailure:
    """Why a token refresh was refused, in HubSpot's (`status`) and OAuth's (`error`) terms."""

    http_status: int
    status: str
    error: str
    message: str


@dataclass(frozen=True, slots=True)
class _AccessToken:
    identity: Identity
    expires_at: float  # time.monotonic()
    refresh_token: str


_NOT_FOUND = AuthFailure(
    "INVALID_AUTHENTICATION",
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you "
    "can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
)


class Authenticator:
    """Holds every token the fake accepts and turns `Authorization` headers into identities."""

    def __init__(self, config: FakeConfig) -> None:
        self._static: dict[str, Identity] = {}
        self.token_scopes = config.token_scopes
        for number, token in enumerate(config.tokens, start=1):
            self.add_static_token(token, f"app-{number}")
        self.client_id = config.oauth_client_id
        self.client_secret = config.oauth_client_secret
        self.lifetime_s = config.access_token_lifetime_s
        self._grants: dict[str, RefreshGrant] = {g.token: g for g in config.refresh_tokens}
        self._revoked: set[str] = set()
        self._access: dict[str, _AccessToken] = {}
        self.refreshes: Counter[int] = Counter()

    def add_static_token(
        self, token: str, app: str | None = None, scopes: list[str] | None = None
    ) -> str:
        """Accept `token` as a private-app token; return the identity name (`app:NAME`).

        `scopes` None: the configured private-app scopes (`--token-scopes`, default write only).
        """
        if not token:
            raise ValueError("the token is empty")
        name = f"app:{app or f'app-{len(self._static) + 1}'}"
        granted = frozenset(self.token_scopes if scopes is None else scopes)
        self._static[token] = Identity(name, None, granted)
        return name

    def add_refresh_token(self, grant: RefreshGrant) -> None:
        """Accept `grant.token` as a refresh token for `grant.portal_id` (un-revoking it)."""
        self._grants[grant.token] = grant
        self._revoked.discard(grant.token)

    def revoke(self, refresh_token: str, *, access_tokens: bool = False) -> bool:
        """Revoke a refresh token (and optionally its access tokens); return whether it existed."""
        known = refresh_token in self._grants and refresh_token not in self._revoked
        self._revoked.add(refresh_token)
        if access_tokens:
            for token in [t for t, a in self._access.items() if a.refresh_token == refresh_token]:
                del self._access[token]
        return known

    def authenticate(self, header: str | None) -> Identity | AuthFailure:
        """Return the identity behind an `Authorization: Bearer …` header, or why not."""
        if not header or header[: len(_BEARER)].lower() != _BEARER:
            return _NOT_FOUND
        token = header[len(_BEARER) :].strip()
        static = self._static.get(token)
        if static is not None:
            return static
        access = self._access.get(token)
        if access is None:
            return _NOT_FOUND
        expired_for = time.monotonic() - access.expires_at
        if expired_for >= 0:
            return AuthFailure(
                "EXPIRED_AUTHENTICATION",
                f"The OAuth token used to make this call expired {int(expired_for)} second(s) ago.",
            )
        return access.identity

    def refresh(
        self, client_id: str | None, client_secret: str | None, refresh_token: str | None
    ) -> RefreshResult | RefreshFailure:
        """Exchange a refresh token for a new access token (`grant_type=refresh_token`)."""
        if not client_id or not secrets.compare_digest(client_id, self.client_id):
            return RefreshFailure(
                400, "BAD_CLIENT_ID", "invalid_client", "missing or unknown client id"
            )
        if not client_secret or not secrets.compare_digest(client_secret, self.client_secret):
            return RefreshFailure(
                400, "BAD_CLIENT_SECRET", "invalid_client", "missing or invalid client secret"
            )
        grant = self._grants.get(refresh_token or "")
        if grant is None or grant.token in self._revoked:
            return RefreshFailure(
                400, "BAD_REFRESH_TOKEN", "invalid_grant", "missing or unknown refresh token"
            )
        access_token = secrets.token_urlsafe(32)
        identity = Identity(f"portal:{grant.portal_id}", grant.portal_id, frozenset(grant.scopes))
        self._access[access_token] = _AccessToken(
            identity, time.monotonic() + self.lifetime_s, grant.token
        )
        self.refreshes[grant.portal_id] += 1
        return RefreshResult(
            access_token, grant.token, max(1, math.ceil(self.lifetime_s)), grant.portal_id
        )
