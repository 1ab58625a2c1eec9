"""The job schema: HubSpot's create-event body as one pydantic model, and the job envelope.

Field names are spelled as HubSpot spells them (`MarketingEventCreateRequestParams` in the spec
copied to `eventq/data/`); the same model validates in producers (fail fast) and in the worker
(never POST an invalid body).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_serializer,
    field_validator,
)

from eventq.keys import ID_PATTERN

__all__ = [
    "DATE_TIME_HINT",
    "ZONE_HINT",
    "CustomProperty",
    "JobEnvelope",
    "JobSource",
    "MarketingEvent",
    "MaskedSubstring",
    "MaskedSubstrings",
    "callback_host",
    "check_callback_url",
    "format_utc",
    "new_job_id",
    "spec_schemas",
    "zoned_date_time",
]

JobSource = Literal["api", "cli", "http", "replay", "raw"]

# Only what HubSpot's spec refuses is refused here (types, enums, integer formats, date-time
# with an offset), and an externalEventId that cannot travel as a URL path segment ('.', '..');
# lengths, URL shape and date order are eventq's advice (eventq.event_warnings).


def _usable_as_path_segment(value: str) -> str:
    if value in (".", ".."):
        raise ValueError(
            f"cannot be {value!r}: re-delivery addresses the event by it in a URL path, where "
            f"{value!r} means another path"
        )
    return value


# a path segment of the re-delivery PUT and GET
ExternalEventId = Annotated[
    str, StringConstraints(min_length=1), AfterValidator(_usable_as_path_segment)
]
Int32 = Annotated[int, Field(ge=-(2**31), lt=2**31)]
Int64 = Annotated[int, Field(ge=-(2**63), lt=2**63)]
PortalId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]
# what each date-time message says to do, with an example (RFC 3339: a date-time has a zone)
DATE_TIME_HINT = (
    "give a date-time with a zone (RFC 3339), e.g. 2026-03-01T18:00:00Z or "
    "2026-03-01T19:00:00+01:00"
)
ZONE_HINT = "add Z or +01:00, e.g. 2026-03-01T18:00:00Z"


@lru_cache(maxsize=1)
def spec_schemas() -> dict[str, Any]:
    """Return HubSpot's component schemas (copied from the public spec) as a dict."""
    text = resources.files("eventq").joinpath("data/marketing_events_schemas.json").read_text()
    schemas: dict[str, Any] = json.loads(text)["components"]["schemas"]
    return schemas


def _property_sources() -> frozenset[str]:
    return frozenset(spec_schemas()["PropertyValue"]["properties"]["source"]["enum"])


def format_utc(moment: datetime) -> str:
    """Return `moment` as ISO-8601 in UTC with a `Z` suffix and millisecond precision."""
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


class _Body(BaseModel):
    # fields HubSpot's spec does not name are left out (eventq.event_warnings reports them)
    model_config = ConfigDict(extra="ignore", frozen=True)


class MaskedSubstring(_Body):
    """One masked range of a property value (HubSpot's `MaskedSubstring`)."""

    start: Int32
    end: Int32


class MaskedSubstrings(_Body):
    """HubSpot's `MaskedSubstrings`: the masked ranges of a property value."""

    substrings: list[MaskedSubstring]


class CustomProperty(_Body):
    """One item of `customProperties` (HubSpot's `PropertyValue`): `name` and `value` required.

    The spec marks every field required, but HubSpot's own guide sends only `name` and `value`.
    """

    name: str
    value: str
    dataSensitivity: Literal["high", "none", "standard"] | None = None
    isEncrypted: bool | None = None
    isLargeValue: bool | None = None
    maskedSubstrings: MaskedSubstrings | None = None
    persistenceTimestamp: Int64 | None = None
    requestId: str | None = None
    selectedByUser: bool | None = None
    selectedByUserTimestamp: Int64 | None = None
    source: str | None = None
    sourceId: str | None = None
    sourceLabel: str | None = None
    sourceMetadata: str | None = None
    sourceUpstreamDeployable: str | None = None
    sourceVid: list[Int64] | None = None
    timestamp: Int64 | None = None
    unit: str | None = None
    updatedByUserId: Int32 | None = None
    useTimestampAsPersistenceTimestamp: bool | None = None

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str | None) -> str | None:
        if value is not None and value not in _property_sources():
            raise ValueError("not one of HubSpot's property sources (see PropertyValue.source)")
        return value


class MarketingEvent(_Body):
    """HubSpot's create body (`MarketingEventCreateRequestParams`): refuses what the spec refuses.

    `externalEventId` may not be empty: re-delivery addresses the event by it as a URL path
    segment. `customProperties` (required by the spec) defaults to an empty list.
    """

    externalAccountId: str
    externalEventId: ExternalEventId
    eventName: str
    eventOrganizer: str
    customProperties: list[CustomProperty] = Field(default_factory=list)
    eventType: str | None = None
    eventDescription: str | None = None
    eventUrl: str | None = None
    eventCancelled: bool | None = None
    eventCompleted: bool | None = None
    startDateTime: datetime | None = None
    endDateTime: datetime | None = None

    @field_validator("startDateTime", "endDateTime", mode="wrap")
    @classmethod
    def _date_time(cls, value: object, handler: ValidatorFunctionWrapHandler) -> datetime | None:
        return zoned_date_time(value, handler)

    @field_serializer("startDateTime", "endDateTime")
    def _utc(self, value: datetime | None) -> str | None:
        return None if value is None else format_utc(value)

    def to_hubspot(self) -> dict[str, Any]:
        """Return the JSON body to POST: unset optionals left out, `customProperties` always."""
        body = self.model_dump(mode="json", exclude_none=True)
        body["customProperties"] = [
            prop.model_dump(mode="json", exclude_none=True) for prop in self.customProperties
        ]
        return body

    def summary(self) -> str:
        """Return the short, secret-free description shown in Flower and logs."""
        name = self.eventName if len(self.eventName) <= 40 else self.eventName[:39] + "…"
        return f"{self.externalAccountId}/{self.externalEventId} {name!r}"


def zoned_date_time(value: object, handler: ValidatorFunctionWrapHandler) -> datetime | None:
    """Validate a date-time with a zone (pydantic wrap validator); returns it in UTC.

    Raises ValueError saying what is wrong and the accepted form, with an example.
    """
    try:
        moment: datetime | None = handler(value)
    except ValidationError:
        raise ValueError(f"not a date-time; {DATE_TIME_HINT}") from None
    if moment is None:
        return None
    if moment.utcoffset() is None:  # RFC 3339 (the spec's `date-time`) requires an offset
        if isinstance(value, str) and "T" not in value.upper():
            raise ValueError(f"is a date without a time or zone; {DATE_TIME_HINT}")
        raise ValueError(f"has no time zone; {ZONE_HINT}")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(
            f"cannot be expressed as a UTC time (out of range); {DATE_TIME_HINT}"
        ) from None


_CALLBACK_URL_MAX = 2048


def callback_host(url: str) -> str:
    """Return the host (lower case, no port) a callback URL names."""
    return (urlsplit(url).hostname or "").lower()


def check_callback_url(url: str | None) -> str | None:
    """Return `url` when it is a callback URL eventq can call; raise ValueError saying why not."""
    if url is None:
        return None
    if len(url) > _CALLBACK_URL_MAX:
        raise ValueError(f"longer than {_CALLBACK_URL_MAX} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s) URL with a host, e.g. https://app.example.com/hooks")
    if parts.username or parts.password:
        raise ValueError("may not carry a user or password (callbacks are signed instead)")
    return url


def new_job_id() -> str:
    """Return a new random job id."""
    return uuid.uuid4().hex


def _now() -> datetime:
    return datetime.now(UTC)


class JobEnvelope(BaseModel):
    """What travels in the Celery message: the event plus delivery bookkeeping.

    A raw Celery producer may send just `{"event": {...}}`; every other field has a default.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    jobId: Annotated[str, StringConstraints(pattern=ID_PATTERN)] = Field(
        default_factory=new_job_id,
        description="1 to 128 letters, digits, `_`, `-`, `.`, starting with a letter or digit.",
    )
    attempt: int = Field(1, ge=1, description="Number of the attempt this message carries.")
    firstEnqueuedAt: datetime = Field(default_factory=_now)  # with a zone: _enqueued_at
    source: JobSource = "raw"
    portalId: PortalId | None = Field(None, description="HubSpot account (portal) id, OAuth mode.")
    priority: Literal["live", "bulk"] = Field(
        "live", description="`bulk` (replays, backfills) goes to the lower-priority queue."
    )
    event: MarketingEvent
    callbackUrl: str | None = Field(
        None,
        description="Where eventq POSTs the job's signed outcome once it is delivered or "
        "dead-lettered (its host must be in EVENTQ_CALLBACK_ALLOWED_HOSTS).",
    )

    traceContext: dict[str, Annotated[str, StringConstraints(max_length=512)]] | None = Field(
        None,
        max_length=8,
        description="The producer's trace context (W3C `traceparent`, `tracestate`), so the "
        "worker's spans continue its trace (OpenTelemetry, the `otel` extra).",
    )

    @field_validator("callbackUrl")
    @classmethod
    def _callback_url(cls, value: str | None) -> str | None:
        return check_callback_url(value)

    @field_validator("firstEnqueuedAt", mode="wrap")
    @classmethod
    def _enqueued_at(cls, value: object, handler: ValidatorFunctionWrapHandler) -> datetime:
        moment = zoned_date_time(value, handler)
        if moment is None:
            raise ValueError(f"not a date-time; {DATE_TIME_HINT}")
        return moment

    @field_serializer("firstEnqueuedAt")
    def _utc(self, value: datetime) -> str:
        return format_utc(value)

    def summary(self) -> str:
        """Return the Flower/log summary: account, external id, name, attempt."""
        portal = f"portal {self.portalId} " if self.portalId else ""
        return f"{portal}{self.event.summary()} attempt {self.attempt}"

    def to_message(self) -> dict[str, Any]:
        """Return the envelope as a message's JSON (unset optionals left out: smaller in Redis)."""
        return self.model_dump(mode="json", exclude_none=True)

    def to_json(self) -> str:
        """Return the envelope as compact JSON text (unset optionals left out), as stored."""
        return self.model_dump_json(exclude_none=True)

    def next_attempt(self) -> JobEnvelope:
        """Return a copy carrying the next attempt number."""
        return self.model_copy(update={"attempt": self.attempt + 1})
