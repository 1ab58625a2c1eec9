"""What one HTTP exchange with HubSpot produced, as plain typed data (no aiohttp types).

AttemptResult
 ├── Created        2xx from create (POST) or upsert (PUT): the event exists, with its id if any
 ├── Found          200 from the existence check (GET): created earlier
 ├── NotFound       404 from the existence check: safe to POST
 ├── HttpFailure    any other HTTP answer: status, HubSpot's error body, headers
 └── NetworkFailure no HTTP answer: connect error, timeout, connection closed

BatchAttemptResult (the batch upsert, `POST .../events/upsert`)
 ├── BatchAnswer    200 or 207: per-input `results` (no external ids) and `errors` (BatchError)
 ├── HttpFailure    any other answer: the whole batch failed (429, 400 too large, 5xx…)
 └── NetworkFailure no HTTP answer: the whole batch may or may not have been stored
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "AttemptResult",
    "BatchAnswer",
    "BatchAttemptResult",
    "BatchError",
    "Created",
    "Found",
    "HttpFailure",
    "NetworkFailure",
    "NotFound",
]


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


@dataclass(frozen=True)
class BatchError:
    """One entry of a batch answer's `errors` (HubSpot's `StandardError`).

    `context` maps names to values (HubSpot's may name the refused input's external ids);
    `details` are its `ErrorDetail`s (`message`, `in`, ...), whose `in` may name a field or a
    position such as `inputs[3].startDateTime`.
    """

    message: str
    category: str | None = None
    context: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    details: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class BatchAnswer:
    """HubSpot answered a batch upsert with 200 or 207 (207: some inputs failed).

    `results` are the upserted events as HubSpot echoes them (`id`, `objectId`, the event's
    fields, no external ids), in no promised order; `errors` the refused inputs; `num_errors`
    HubSpot's count, which may exceed `len(errors)`. Which input each belongs to is
    `worker.batch_results.match_results`' job.
    """

    status: int
    results: tuple[Mapping[str, Any], ...]
    errors: tuple[BatchError, ...] = ()
    num_errors: int = 0
    batch_status: str | None = None  # HubSpot's `status`: COMPLETE, PENDING, PROCESSING…
    headers: Mapping[str, str] = field(default_factory=dict)
    latency_ms: float = 0.0


AttemptResult = Created | Found | NotFound | HttpFailure | NetworkFailure
BatchAttemptResult = BatchAnswer | HttpFailure | NetworkFailure
