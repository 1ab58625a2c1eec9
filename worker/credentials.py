"""Where access tokens come from: a static private-app token, or OAuth per HubSpot account."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pydantic import SecretStr

__all__ = [
    "AccessToken",
    "Credentials",
    "CredentialsError",
    "StaticCredentials",
    "bucket_for_token",
]


def bucket_for_token(token: str) -> str:
    """Return the rate-limit bucket of a private-app token (a hash, never the token)."""
    from worker.rate_limit import bucket_for_token as _bucket  # the limiter owns the naming

    return _bucket(token)


class CredentialsError(Exception):
    """No usable token for this account; `reason` says what an admin must do."""

    def __init__(self, message: str, *, portal_id: str | None = None) -> None:
        super().__init__(message)
        self.portal_id = portal_id


@dataclass(frozen=True)
class AccessToken:
    """A token to send, the limiter bucket it spends from, and the account it belongs to."""

    value: SecretStr
    bucket: str
    portal_id: str | None = None


class Credentials(Protocol):
    """Source of access tokens for the delivery path."""

    async def token_for(self, portal_id: str | None) -> AccessToken:
        """Return a valid token for the account; raise CredentialsError when there is none."""
        ...

    async def refresh_after_401(self, token: AccessToken) -> bool:
        """Refresh after HubSpot said the token expired; returns True to retry at once."""
        ...


class StaticCredentials:
    """A private-app token: one token, one bucket, nothing to refresh."""

    def __init__(self, token: SecretStr) -> None:
        self._token = AccessToken(token, bucket_for_token(token.get_secret_value()))

    async def token_for(self, portal_id: str | None) -> AccessToken:
        """Return the private-app token whatever the account."""
        return self._token

    async def refresh_after_401(self, token: AccessToken) -> bool:
        """Return False: a private-app token cannot be refreshed."""
        return False
