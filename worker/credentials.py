"""Where access tokens come from: a static private-app token, or OAuth per HubSpot account.

CredentialsError            no usable token: the job is dead-lettered as `auth`
 └── CredentialsUnavailable the token endpoint is down or busy: the job waits, no attempt used
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import SecretStr

from eventq.errors import EventqError
from worker.attempts import HttpFailure
from worker.rate_limit import bucket_for_token

__all__ = [
    "READ_SCOPE",
    "WRITE_SCOPE",
    "AccessToken",
    "Credentials",
    "CredentialsError",
    "CredentialsUnavailable",
    "StaticCredentials",
    "can_read_events",
    "describe_auth_failure",
    "is_expired_token",
]

WRITE_SCOPE = "crm.objects.marketing_events.write"  # what the create endpoint requires
READ_SCOPE = "crm.objects.marketing_events.read"  # what the existence check (GET) requires
_REPLAY = "`eventq dlq replay --all --reason auth`"


class CredentialsError(EventqError):
    """No usable token for this account; the message says what an admin must do."""

    def __init__(self, message: str, *, portal_id: str | None = None) -> None:
        super().__init__(message)
        self.portal_id = portal_id


class CredentialsUnavailable(CredentialsError):
    """No token right now (token endpoint down, slow or rate limited); try after `retry_after_s`."""

    def __init__(
        self, message: str, *, portal_id: str | None = None, retry_after_s: float = 1.0
    ) -> None:
        super().__init__(message, portal_id=portal_id)
        self.retry_after_s = retry_after_s


def is_expired_token(failure: HttpFailure) -> bool:
    """Return True for HubSpot's 401 saying the access token expired (a refresh fixes it)."""
    return failure.status == 401 and failure.category == "EXPIRED_AUTHENTICATION"


def describe_auth_failure(failure: HttpFailure, portal_id: str | None) -> str:
    """Return the DLQ message of a 401/403: HubSpot's own, naming any missing scope and the fix."""
    if failure.status != 403 or not _is_scope_failure(failure):
        return failure.message
    scopes = sorted(set(_required_scopes(failure.body))) or [WRITE_SCOPE]
    account = f"portal {portal_id}" if portal_id else "the private app"
    return (
        f"missing scope {', '.join(scopes)}: the token of {account} was not granted it. Add the "
        f"scope to the app and re-authorize it (OAuth) or update the private app, then {_REPLAY}."
        f" HubSpot: {failure.message}"
    )


def _is_scope_failure(failure: HttpFailure) -> bool:
    return failure.category == "MISSING_SCOPES" or any(_required_scopes(failure.body))


def _required_scopes(body: Mapping[str, Any]) -> Iterator[str]:
    # HubSpot lists them in errors[].context.requiredGranularScopes (older: requiredScopes)
    for error in body.get("errors") or []:
        context = error.get("context") if isinstance(error, dict) else None
        if not isinstance(context, dict):
            continue
        for key, values in context.items():
            if key.startswith("required") and "Scope" in key and isinstance(values, list):
                yield from (str(v) for v in values)


@dataclass(frozen=True)
class AccessToken:
    """A token to send, the limiter bucket it spends from, and the account it belongs to."""

    value: SecretStr
    bucket: str
    portal_id: str | None = None
    scopes: frozenset[str] | None = None


def can_read_events(token: AccessToken) -> bool:
    """Return True when the token is known to carry the read scope the existence check needs."""
    return token.scopes is not None and READ_SCOPE in token.scopes


class Credentials(Protocol):
    """Source of access tokens for the delivery path."""

    async def token_for(self, portal_id: str | None) -> AccessToken:
        """Return a valid token for the account; raise CredentialsError when there is none."""
        ...

    async def refresh_after_401(self, token: AccessToken) -> bool:
        """Refresh after HubSpot said the token expired; returns True to retry at once."""
        ...


class StaticCredentials:
    """A private-app token: one token, one bucket, nothing to refresh.

    `has_read_scope` declares the read scope (HubSpot does not tell a private app its scopes).
    """

    def __init__(self, token: SecretStr, *, has_read_scope: bool = False) -> None:
        scopes = frozenset({WRITE_SCOPE, READ_SCOPE}) if has_read_scope else None
        self._token = AccessToken(token, bucket_for_token(token.get_secret_value()), None, scopes)

    async def token_for(self, portal_id: str | None) -> AccessToken:
        """Return the private-app token whatever the account."""
        return self._token

    async def refresh_after_401(self, token: AccessToken) -> bool:
        """Return False: a private-app token cannot be refreshed."""
        return False
