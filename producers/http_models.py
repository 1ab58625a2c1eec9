"""Request and response models of the HTTP service; `/openapi.json` is generated from them."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    create_model,
    field_validator,
    model_validator,
)

from eventq.records import AuditEntry, DeadLetter, DeadLetterReason, JobState
from eventq.schema import MarketingEvent
from producers.replay import ReplayStatus

__all__ = [
    "AuditPage",
    "AuditQuery",
    "BatchItemResult",
    "BatchResponse",
    "DeadLetterPageBody",
    "DeadLetterQuery",
    "DeadLetterSelector",
    "DeleteResponse",
    "EnqueueResponse",
    "ErrorBody",
    "ErrorCode",
    "FieldProblem",
    "HealthResponse",
    "IngestEvent",
    "IngestQuery",
    "JsonPosition",
    "LoginForm",
    "ReadyResponse",
    "ReplayItem",
    "ReplayRequest",
    "ReplayResponse",
    "SessionInfo",
    "batch_models",
]

ErrorCode = Literal[
    "malformed_request",
    "malformed_json",
    "unauthorized",
    "forbidden",
    "csrf_failed",
    "not_found",
    "method_not_allowed",
    "body_too_large",
    "unsupported_media_type",
    "validation_failed",
    "unavailable",
    "internal_error",
    "http_error",
]
Id = Annotated[str, StringConstraints(min_length=1, max_length=256)]
_DLQ_CURSOR = re.compile(r"^([^:]+):(.+)$")
MAX_REPLAY = 1000


class _Query(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldProblem(BaseModel):
    """One problem with one field: `field` is a dotted path such as `customProperties.0.name`."""

    field: str
    message: str


class JsonPosition(BaseModel):
    """Where a JSON body stopped parsing (1-based line and column, 0-based character offset)."""

    line: int
    column: int
    offset: int


class ErrorBody(BaseModel):
    """The shape of every error answer: a stable `error` code, a sentence, and details."""

    error: ErrorCode
    message: str
    errors: list[FieldProblem] = Field(default_factory=list)
    position: JsonPosition | None = None
    requestId: str = Field("", description="Also in the X-Request-Id header and the service log.")


class IngestEvent(MarketingEvent):
    """The body of `POST /v1/events`: HubSpot's create body, and the job's `callbackUrl`."""

    callbackUrl: str | None = Field(
        None,
        description="Where eventq POSTs the job's signed outcome when it is delivered or "
        "dead-lettered; its host must be in EVENTQ_CALLBACK_ALLOWED_HOSTS (else 422 naming "
        "`callbackUrl`). Not sent to HubSpot.",
    )


class IngestQuery(_Query):
    """Options of `POST /v1/events` and `POST /v1/events/batch`."""

    portalId: Id | None = Field(None, description="HubSpot account (portal) id, OAuth mode.")
    priority: Literal["live", "bulk"] = Field(
        "live", description="`bulk` sends to the lower-priority queue (backfills)."
    )


_WARNINGS = "eventq's advice on fields HubSpot accepts; the event is enqueued all the same."


class EnqueueResponse(BaseModel):
    """The job made for an event, or the live job that already has it (`duplicate`)."""

    jobId: str
    status: JobState
    duplicate: bool = False
    warnings: list[FieldProblem] = Field(default_factory=list, description=_WARNINGS)


class BatchItemResult(BaseModel):
    """One item of a batch: accepted with a job id, or rejected with field problems."""

    index: int
    status: Literal["accepted", "rejected"]
    jobId: str | None = None
    duplicate: bool = False
    errors: list[FieldProblem] = Field(default_factory=list)
    warnings: list[FieldProblem] = Field(default_factory=list, description=_WARNINGS)


class BatchResponse(BaseModel):
    """Per-item results in request order; accepted items are enqueued even if others are not."""

    accepted: int
    rejected: int
    duplicates: int
    results: list[BatchItemResult]


def batch_models(max_items: int) -> tuple[type[BaseModel], type[BaseModel]]:
    """Return (the documented batch body, the container that validates it) for `max_items`.

    The container accepts any item so that each one is validated on its own and reported
    per index; the documented body names the event schema every item must meet.
    """
    bounds = Field(min_length=1, max_length=max_items)
    documented = create_model(
        "BatchRequest",
        __config__=ConfigDict(extra="forbid"),
        __doc__="Up to EVENTQ_MAX_BATCH_SIZE events, validated and enqueued one by one.",
        events=(list[MarketingEvent], bounds),
    )
    container = create_model(
        "BatchContainer", __config__=ConfigDict(extra="forbid"), events=(list[Any], bounds)
    )
    return documented, container


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class DeadLetterSelector(_Body):
    """Which dead-letter entries to act on; every given criterion must match."""

    reason: DeadLetterReason | None = None
    httpStatus: int | None = Field(None, ge=100, le=599)
    since: datetime | None = Field(None, description="Dead-lettered at or after (ISO-8601).")
    until: datetime | None = Field(None, description="Dead-lettered at or before (ISO-8601).")
    text: str | None = Field(None, min_length=1, max_length=200, description="Substring.")
    message: str | None = Field(
        None,
        max_length=200,
        description="A group's message (as the overview lists it), matched whole.",
    )

    @field_validator("since", "until")
    @classmethod
    def _assume_utc(cls, value: datetime | None) -> datetime | None:
        return _utc(value)


class DeadLetterQuery(DeadLetterSelector):
    """Filters and pagination of `GET /v1/dead-letters`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = Field(
        None, max_length=300, description="`nextCursor` of the previous page."
    )

    @field_validator("cursor")
    @classmethod
    def _check_cursor(cls, value: str | None) -> str | None:
        if value is None:
            return value
        match = _DLQ_CURSOR.match(value)
        if not match or not _is_finite(match.group(1)):
            raise ValueError("not a cursor returned by this service")
        return value


def _is_finite(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


class DeadLetterPageBody(BaseModel):
    """One page of dead-letter entries, newest first; `nextCursor` is null on the last page."""

    entries: list[DeadLetter]
    nextCursor: str | None = None


class ReplayRequest(_Body):
    """Replay entries by `ids` or by `filter`, optionally after editing the payload.

    `patch` is a JSON merge patch (RFC 7396) applied to each entry's payload; `payload` replaces
    the payload of a single entry (edit-and-replay). Either way the result is re-validated.
    """

    ids: list[Id] | None = Field(None, min_length=1, max_length=MAX_REPLAY)
    filter: DeadLetterSelector | None = None
    dryRun: bool = False
    patch: dict[str, Any] | None = None
    payload: dict[str, Any] | None = None
    limit: int = Field(MAX_REPLAY, ge=1, le=MAX_REPLAY, description="Most entries per call.")

    @model_validator(mode="after")
    def _one_selection(self) -> ReplayRequest:
        if (self.ids is None) == (self.filter is None):
            raise ValueError("give `ids` or `filter`, not both")
        if self.patch is not None and self.payload is not None:
            raise ValueError("give `patch` or `payload`, not both")
        if self.payload is not None and (self.ids is None or len(self.ids) != 1):
            raise ValueError("`payload` replaces one entry's payload: give exactly one id")
        return self


class ReplayItem(BaseModel):
    """What happened to one entry (`invalid` comes with the field problems)."""

    id: str
    status: ReplayStatus
    jobId: str | None = None
    detail: str = ""
    errors: list[FieldProblem] = Field(default_factory=list)


class ReplayResponse(BaseModel):
    """Per-entry replay results and how many ended in each status."""

    dryRun: bool
    counts: dict[str, int]
    results: list[ReplayItem]


class DeleteResponse(BaseModel):
    """The entry is gone."""

    id: str
    deleted: bool = True


class AuditQuery(_Query):
    """Pagination of `GET /v1/audit`, newest first."""

    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = Field(
        None, pattern=r"^\d{1,20}-\d{1,20}$", description="`nextCursor` of the previous page."
    )

    @field_validator("cursor")
    @classmethod
    def _fits_a_stream_id(cls, value: str | None) -> str | None:
        if value is not None and any(int(part) >= 2**64 for part in value.split("-")):
            raise ValueError("not a cursor returned by this service")
        return value


class AuditPage(BaseModel):
    """Admin actions, newest first."""

    entries: list[AuditEntry]
    nextCursor: str | None = None


class HealthResponse(BaseModel):
    """The process is up."""

    status: Literal["ok"] = "ok"


class ReadyResponse(BaseModel):
    """Whether Redis and the broker answer (503 when either does not)."""

    status: Literal["ready", "not_ready"]
    checks: dict[str, Literal["ok", "unreachable"]]


class SessionInfo(BaseModel):
    """The admin page's session: whose key, and the CSRF token to send as X-CSRF-Token."""

    keyName: str
    csrfToken: str
    expiresAt: float


class LoginForm(_Body):
    """The admin login form."""

    key: str = Field(min_length=1, max_length=4096, description="An EVENTQ_ADMIN_API_KEYS key.")
