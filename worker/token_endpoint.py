"""HubSpot's OAuth token endpoint: a refresh-token grant in, a typed answer out.

Like `hubspot_client`, this is a module that touches aiohttp; every status and network failure
becomes data:

TokenAnswer
 ├── Granted      200 with an access token, its lifetime, and (v3) the account's `hub_id`, the
 │                granted `scopes` and a rotated refresh token if HubSpot sent a different one
 ├── Rejected     HubSpot refused the grant: `invalid_grant` (refresh token revoked or wrong),
 │                `invalid_client` (client id/secret wrong) or another 4xx
 └── Unavailable  no answer, 429 or 5xx: try again later

No answer, message or exception from here contains the client secret or a token.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from pydantic import SecretStr

from worker.retry_policy import retry_after_s

__all__ = [
    "Granted",
    "Rejected",
    "TokenAnswer",
    "TokenEndpoint",
    "Unavailable",
    "parse_hub_id",
    "parse_scopes",
]

log = logging.getLogger("eventq.oauth")

_INVALID_GRANT = frozenset({"invalid_grant", "BAD_REFRESH_TOKEN"})
_INVALID_CLIENT = frozenset({"invalid_client", "BAD_CLIENT_ID", "BAD_CLIENT_SECRET"})
_DEFAULT_RETRY_S = 5.0
_MAX_MESSAGE = 300


@dataclass(frozen=True)
class Granted:
    """A new access token, valid for `expires_in_s` seconds from when HubSpot answered.

    `hub_id` is the account the token belongs to and `scopes` what it was granted (None when the
    answer does not say); `new_refresh_token` is set only when HubSpot answered a refresh token
    different from the one sent (rotation): from then on it is the one to use.
    """

    access_token: SecretStr
    expires_in_s: float
    hub_id: str | None = None
    scopes: frozenset[str] | None = None
    new_refresh_token: SecretStr | None = None


@dataclass(frozen=True)
class Rejected:
    """HubSpot refused the grant; `kind` is `invalid_grant`, `invalid_client` or `other`."""

    kind: str
    status: int
    message: str  # HubSpot's description, with any secret removed


@dataclass(frozen=True)
class Unavailable:
    """No usable answer (network, timeout, 429, 5xx, malformed 200); retry after `retry_after_s`."""

    detail: str
    retry_after_s: float = _DEFAULT_RETRY_S


TokenAnswer = Granted | Rejected | Unavailable


class TokenEndpoint:
    """POSTs `grant_type=refresh_token` (form-encoded, client credentials in the body, as HubSpot's
    `/oauth/v3/token` requires) over the worker's shared session.

    With a second client secret (rotation in progress), a refresh the first one gets refused
    with `invalid_client` is repeated with the second, which is then tried first from now on.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        client_id: str,
        client_secret: SecretStr,
        next_client_secret: SecretStr | None = None,
        timeout_s: float,
    ) -> None:
        self._session = session
        self._url = url
        self._client_id = client_id
        self._client_secrets = [
            client_secret,
            *([next_client_secret] if next_client_secret else []),
        ]
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def refresh(self, refresh_token: SecretStr) -> TokenAnswer:
        """Exchange `refresh_token` for a new access token; returns a TokenAnswer, never raises
        on HTTP or network failures."""
        first, *others = self._client_secrets  # a snapshot: refreshes of other portals overlap
        answer = await self._post(first, refresh_token)
        for other in others:
            if not _bad_client(answer):
                break
            log.warning("HubSpot refused one OAuth client secret; trying the other one")
            answer = await self._post(other, refresh_token)
            if not _bad_client(answer):  # prefer the secret that worked from now on
                self._client_secrets = [other, *(s for s in self._client_secrets if s is not other)]
        return answer

    async def _post(self, client_secret: SecretStr, refresh_token: SecretStr) -> TokenAnswer:
        form = {
            "grant_type": "refresh_token",
            "client_id": self._client_id,
            "client_secret": client_secret.get_secret_value(),
            "refresh_token": refresh_token.get_secret_value(),
        }
        headers = {"Accept": "application/json"}
        try:
            async with self._session.post(
                self._url, data=form, headers=headers, timeout=self._timeout
            ) as response:
                status, retry_after = response.status, response.headers.get("Retry-After")
                text = await response.text()
        except TimeoutError:
            return Unavailable("token endpoint timed out")
        except aiohttp.ClientError as error:
            # the class only: aiohttp messages may quote URLs or headers
            return Unavailable(f"token endpoint unreachable ({type(error).__name__})")
        secrets = (form["client_secret"], form["refresh_token"])
        return _classify(status, _json(text), retry_after, secrets)


def _bad_client(answer: TokenAnswer) -> bool:
    return isinstance(answer, Rejected) and answer.kind == "invalid_client"


def _json(text: str) -> dict[str, Any]:
    try:
        loaded = json.loads(text) if text else {}
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text[:_MAX_MESSAGE]


def _retry_after_s(value: str | None) -> float:
    """Seconds to wait: `Retry-After` (seconds or HTTP date, as for deliveries), at least 1 s."""
    parsed = retry_after_s({"Retry-After": value}, time.time()) if value is not None else None
    return _DEFAULT_RETRY_S if parsed is None else max(1.0, parsed)


def _classify(
    status: int, body: dict[str, Any], retry_after: str | None, secrets: tuple[str, ...]
) -> TokenAnswer:
    if status == 200:
        return _granted(body, secrets)
    if status == 429 or status >= 500:
        return Unavailable(f"token endpoint answered HTTP {status}", _retry_after_s(retry_after))
    codes = {str(body.get("error", "")), str(body.get("status", ""))}
    message = body.get("error_description") or body.get("message") or f"HTTP {status}"
    kind = "other"
    if codes & _INVALID_GRANT:
        kind = "invalid_grant"
    elif codes & _INVALID_CLIENT:
        kind = "invalid_client"
    return Rejected(kind, status, _redact(str(message), secrets))


def _field(body: dict[str, Any], name: str) -> Any:
    """Return `name` (snake_case, as HubSpot answers) or its camelCase spelling (some of
    HubSpot's reference pages show that one)."""
    if name in body:
        return body[name]
    head, *rest = name.split("_")
    return body.get(head + "".join(part.title() for part in rest))


def parse_hub_id(value: Any) -> str | None:
    """Return a token answer's `hub_id` as the digits of a portal id, None when absent or not an
    id (an answer without it, such as v1's before August 2025, is not checked)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value > 0:
        return str(value)
    if isinstance(value, str) and value.strip().isdigit():
        return value.strip()
    return None


def parse_scopes(value: Any) -> frozenset[str] | None:
    """Return a token answer's `scopes` (a list, or one space-separated string as OAuth's
    `scope`), None when absent or malformed (unknown, never "no scopes")."""
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return frozenset(v for v in value if v)
    return None


def _granted(body: dict[str, Any], secrets: tuple[str, ...]) -> TokenAnswer:
    token, expires_in = _field(body, "access_token"), _field(body, "expires_in")
    if not isinstance(token, str) or not token or not isinstance(expires_in, int | float):
        return Unavailable("token endpoint answered 200 without access_token and expires_in")
    if isinstance(expires_in, bool) or expires_in <= 0:
        return Unavailable("token endpoint answered a token that is already expired")
    new_refresh = _field(body, "refresh_token")
    rotated = isinstance(new_refresh, str) and new_refresh.strip() not in ("", secrets[1])
    scopes = _field(body, "scopes")
    return Granted(
        SecretStr(token),
        float(expires_in),
        hub_id=parse_hub_id(_field(body, "hub_id")),
        scopes=parse_scopes(body.get("scope") if scopes is None else scopes),
        new_refresh_token=SecretStr(new_refresh.strip()) if rotated else None,
    )
