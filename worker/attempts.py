"""What one HTTP exchange with HubSpot produced, as plain typed data (no aiohttp types).

AttemptResult
 ├── Created        2xx from create (POST) or upsert (PUT): the event exists, with its id if any
 ├── Found          200 from the existence check (GET): created earlier
 ├── NotFound       404 from the existence check: safe to POST
 ├── HttpFailure    any other HTTP answer: status, HubSpot's error body, headers
 └── NetworkFailure no HTTP answer: connect error, timeout, connection closed
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["AttemptResult", "Created", "Found", "HttpFailure", "NetworkFailure", "NotFound"]


@dataclass(frozen=True)
class Created:
    """HubSpot created (or, for a PUT, created or updated) the event.

    `object_id` is the answer's `id` or `objectId`; None when the answer carried neither.
    """

    object_id: str | None
    headers: Mapping[str, str] = field(default_factory=dict)
    latency_ms: float = 0.0


@dataclass(frozen=True)
class Found:
    """The existence check found the event: an earlier attempt took effect."""

    object_id: str
    headers: Mapping[str, str] = field(default_factory=dict)
    latency_ms: float = 0.0


@dataclass(frozen=True)
class NotFound:
    """The existence check did not find the event."""

    headers: Mapping[str, str] = field(default_factory=dict)
    latency_ms: float = 0.0


@dataclass(frozen=True)
class HttpFailure:
    """HubSpot answered with a status other than success."""

    status: int
    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)
    latency_ms: float = 0.0

    @property
    def message(self) -> str:
        """Return HubSpot's human-readable message, or the status when there is none."""
        return str(self.body.get("message") or f"HTTP {self.status}")

    @property
    def category(self) -> str | None:
        """Return HubSpot's error category (VALIDATION_ERROR, RATE_LIMIT…), if any."""
        value = self.body.get("category") or self.body.get("errorType")
        return None if value is None else str(value)

    @property
    def correlation_id(self) -> str | None:
        """Return HubSpot's correlationId, quoted in support tickets."""
        value = self.body.get("correlationId")
        return None if value is None else str(value)

    @property
    def policy_name(self) -> str | None:
        """Return the 429 policy (TEN_SECONDLY_ROLLING or DAILY), if any."""
        value = self.body.get("policyName")
        return None if value is None else str(value)


@dataclass(frozen=True)
class NetworkFailure:
    """No HTTP answer. `sent` is True when the request may have reached HubSpot."""

    kind: Literal["connect", "timeout", "disconnected", "other"]
    sent: bool
    detail: str
    latency_ms: float = 0.0
    headers: Mapping[str, str] = field(default_factory=dict)


AttemptResult = Created | Found | NotFound | HttpFailure | NetworkFailure
