"""Bearer-token authentication: private-app tokens, OAuth refresh tokens and access tokens.

Also what the token endpoint can be told to do differently: rotate a portal's refresh token on
its next refresh (keeping or revoking the old one), and answer with an injected fault (429 with
or without `Retry-After`, 5xx) for one portal or all.
"""

from __future__ import annotations

import math
import secrets
import time
from collections import Counter
from dataclasses import dataclass

from fake_hubspot.config import FakeConfig, RefreshGrant

__all__ = [
    "AuthFailure",
    "Authenticator",
    "Identity",
    "RefreshFailure",
    "RefreshResult",
    "TokenFault",
]

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
    scopes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RefreshFailure:
    """Why a token refresh was refused, in HubSpot's (`status`) and OAuth's (`error`) terms."""

    http_status: int
    status: str
    error: str
    message: str


@dataclass(slots=True)
class TokenFault:
    """An injected token-endpoint answer for the next `count` refreshes of `portal_id` (or any)."""

    status: int
    headers: dict[str, str]
    count: int
    portal_id: int | None = None


@dataclass(slots=True)
class _Rotation:
    """Issue a new refresh token on the next `count` refreshes; revoke the used one or keep it."""

    count: int
    revoke_old: bool


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
        self._rotations: dict[int, _Rotation] = {}
        self.rotated: list[dict[str, object]] = []  # issued refresh tokens, for tests to read
        self._faults: list[TokenFault] = []

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

    def rotate_next(self, portal_id: int, *, count: int = 1, revoke_old: bool = True) -> None:
        """Make the next `count` refreshes of `portal_id` answer a new refresh token.

        With `revoke_old`, the refresh token used is revoked when its successor is issued (so
        only the newest works); without, both keep working.
        """
        self._rotations[portal_id] = _Rotation(count, revoke_old)

    def fail_next(self, fault: TokenFault) -> None:
        """Answer the next `fault.count` refreshes (of `fault.portal_id`, or any) with a fault."""
        self._faults.append(fault)

    def take_fault(self, refresh_token: str | None) -> TokenFault | None:
        """Return the injected fault for a refresh with `refresh_token`, using up one count."""
        grant = self._grants.get(refresh_token or "")
        portal = None if grant is None else grant.portal_id
        for fault in self._faults:
            if fault.count > 0 and fault.portal_id in (None, portal):
                fault.count -= 1
                self._faults = [f for f in self._faults if f.count > 0]
                return fault
        return None

    def pending_faults(self) -> int:
        """Return how many injected token-endpoint answers are still to come."""
        return sum(f.count for f in self._faults)

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

    def check_client(
        self, client_id: str | None, client_secret: str | None
    ) -> RefreshFailure | None:
        """Return why the OAuth client credentials are refused, None when they are the app's."""
        if not client_id or not secrets.compare_digest(client_id, self.client_id):
            return RefreshFailure(
                400, "BAD_CLIENT_ID", "invalid_client", "missing or unknown client id"
            )
        if not client_secret or not secrets.compare_digest(client_secret, self.client_secret):
            return RefreshFailure(
                400, "BAD_CLIENT_SECRET", "invalid_client", "missing or invalid client secret"
            )
        return None

    def introspect(self, token: str) -> dict[str, object]:
        """Return what `/oauth/v3/token/introspect` answers for an access or refresh token:
        `active`, and for an active one the account (`hub_id`), `scopes`, `token_use` and, for
        an access token, `expires_in` (HubSpot also echoes the `token`)."""
        access = self._access.get(token)
        if access is not None and access.expires_at > time.monotonic():
            return {
                "active": True,
                "token": token,
                "hub_id": access.identity.portal_id,
                "client_id": self.client_id,
                "scopes": sorted(access.identity.scopes),
                "expires_in": max(0, math.floor(access.expires_at - time.monotonic())),
                "token_use": "access_token",
                "token_type": "Bearer",
            }
        grant = self._grants.get(token)
        if grant is not None and token not in self._revoked:
            return {
                "active": True,
                "token": token,
                "hub_id": grant.portal_id,
                "client_id": self.client_id,
                "scopes": list(grant.scopes),
                "token_use": "refresh_token",
                "token_type": "Bearer",
            }
        return {"active": False}

    def refresh(
        self, client_id: str | None, client_secret: str | None, refresh_token: str | None
    ) -> RefreshResult | RefreshFailure:
        """Exchange a refresh token for a new access token (`grant_type=refresh_token`)."""
        refused = self.check_client(client_id, client_secret)
        if refused is not None:
            return refused
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
        lifetime = max(1, math.ceil(self.lifetime_s))
        new_refresh = self._rotate(grant)
        return RefreshResult(access_token, new_refresh, lifetime, grant.portal_id, grant.scopes)

    def _rotate(self, grant: RefreshGrant) -> str:
        """Return the refresh token to answer: `grant`'s, or a new one if a rotation is due."""
        rotation = self._rotations.get(grant.portal_id)
        if rotation is None or rotation.count <= 0:
            return grant.token
        rotation.count -= 1
        new = RefreshGrant(secrets.token_urlsafe(24), grant.portal_id, grant.scopes)
        self.add_refresh_token(new)
        if rotation.revoke_old:
            self._revoked.add(grant.token)
        self.rotated.append({"portal_id": grant.portal_id, "refresh_token": new.token})
        return new.token
