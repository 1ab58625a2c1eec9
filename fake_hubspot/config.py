"""Startup configuration of the fake HubSpot: tokens, limits, latency, OAuth clients."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = [
    "BATCH_ERROR_POINTERS",
    "DEFAULT_SCOPES",
    "PRIVATE_APP_SCOPES",
    "READ_SCOPE",
    "WRITE_SCOPE",
    "BatchConfig",
    "FakeConfig",
    "RateLimit",
    "RefreshGrant",
]

READ_SCOPE = "crm.objects.marketing_events.read"
WRITE_SCOPE = "crm.objects.marketing_events.write"
DEFAULT_SCOPES: tuple[str, ...] = ("oauth", READ_SCOPE, WRITE_SCOPE)
# a private app set up for this job is granted the write scope only
PRIVATE_APP_SCOPES: tuple[str, ...] = (WRITE_SCOPE,)

# How a batch answer's per-input error names its input: by external ids in `context`, by
# position in `errors[].in` (`inputs[3].eventName`), or not at all. HubSpot documents none.
BATCH_ERROR_POINTERS: tuple[str, ...] = ("external_id", "index", "none")

_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*(ms|s|m)?\s*$")
_UNIT_MS = {"ms": 1.0, "s": 1000.0, "m": 60_000.0, None: 1000.0}
_OFF = frozenset({"off", "none", "no", "0"})


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A rolling-window budget: `requests` per `window_ms` milliseconds."""

    requests: int
    window_ms: int

    def __post_init__(self) -> None:
        if self.requests <= 0 or self.window_ms <= 0:
            raise ValueError("a rate limit needs a positive request count and window")

    @classmethod
    def parse(cls, text: str) -> RateLimit | None:
        """Return the budget written as `100/10s`, `50/500ms`, `600/1m`; None for `off`."""
        if text.strip().lower() in _OFF:
            return None
        match = _RATE_RE.match(text)
        if not match:
            raise ValueError(f"expected a rate such as '100/10s' or 'off', got {text!r}")
        count, amount, unit = match.groups()
        return cls(int(count), round(float(amount or 1) * _UNIT_MS[unit]))


@dataclass(frozen=True, slots=True)
class RefreshGrant:
    """An OAuth refresh token the fake accepts, the portal it belongs to and its scopes."""

    token: str
    portal_id: int
    scopes: tuple[str, ...] = DEFAULT_SCOPES

    @classmethod
    def parse(cls, text: str) -> RefreshGrant:
        """Return the grant written as `PORTAL:TOKEN` or `PORTAL:TOKEN:scope1,scope2`."""
        portal, sep, rest = text.partition(":")
        if not sep or not portal.strip().isdigit() or not rest:
            raise ValueError("expected PORTAL:REFRESH_TOKEN[:scope,scope], e.g. 123:my-token")
        token, sep, scopes = rest.partition(":")
        if not token:
            raise ValueError("the refresh token is empty")
        if not sep:
            return cls(token, int(portal))
        return cls(token, int(portal), tuple(s.strip() for s in scopes.split(",") if s.strip()))


@dataclass(frozen=True, slots=True)
class BatchConfig:
    """How `POST .../events/upsert` behaves: size limit, answer status with errors, order."""

    max_size: int = 100  # HubSpot documents no maximum; its CRM batch APIs take 100
    error_status: int = 207  # the status of an answer whose `errors` is not empty (or 200)
    error_pointer: str = "external_id"  # one of BATCH_ERROR_POINTERS
    shuffle: bool = False  # answer `results` in random order

    def __post_init__(self) -> None:
        if self.max_size <= 0:
            raise ValueError("the maximum batch size must be positive")
        if self.error_status not in (200, 207):
            raise ValueError("a batch answer with errors is 200 or 207")
        if self.error_pointer not in BATCH_ERROR_POINTERS:
            raise ValueError(f"error_pointer must be one of {', '.join(BATCH_ERROR_POINTERS)}")


@dataclass(frozen=True, slots=True)
class FakeConfig:
    """What the fake starts with, and what `POST /_fake/reset` returns it to."""

    tokens: tuple[str, ...] = ("fake-token",)
    rate_limit: RateLimit | None = RateLimit(100, 10_000)
    daily_limit: int | None = None
    daily_timezone: str = "UTC"  # the daily budget resets at midnight here (IANA name)
    latency_ms: float = 0.0
    oauth_client_id: str = "fake-client-id"
    oauth_client_secret: str = "fake-client-secret"  # noqa: S105 - a fake's well-known default
    refresh_tokens: tuple[RefreshGrant, ...] = field(default_factory=tuple)
    access_token_lifetime_s: float = 1800.0
    token_scopes: tuple[str, ...] = PRIVATE_APP_SCOPES  # of the configured private-app tokens
    batch: BatchConfig = field(default_factory=BatchConfig)
