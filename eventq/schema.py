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

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_serializer,
    field_validator,
    model_validator,
)

__all__ = [
    "CustomProperty",
    "JobEnvelope",
    "JobSource",
    "MarketingEvent",
    "format_utc",
    "new_job_id",
    "spec_schemas",
]

JobSource = Literal["api", "cli", "http", "replay", "raw"]

Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=512)]
ShortText = Annotated[str, StringConstraints(max_length=512)]
LongText = Annotated[str, StringConstraints(max_length=65_536)]
Url = Annotated[str, StringConstraints(max_length=2048, pattern=r"^https?://\S+$")]


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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CustomProperty(_Strict):
    """One item of `customProperties` (HubSpot's `PropertyValue`): `name` and `value` required."""

    name: Name
    value: LongText
    dataSensitivity: Literal["high", "none", "standard"] | None = None
    isEncrypted: bool | None = None
    isLargeValue: bool | None = None
    persistenceTimestamp: int | None = None
    requestId: ShortText | None = None
    selectedByUser: bool | None = None
    selectedByUserTimestamp: int | None = None
    source: str | None = None
    sourceId: ShortText | None = None
    sourceLabel: ShortText | None = None
    sourceMetadata: LongText | None = None
    sourceUpstreamDeployable: ShortText | None = None
    sourceVid: list[int] | None = None
    timestamp: int | None = None
    unit: ShortText | None = None
    updatedByUserId: int | None = Field(None, ge=-(2**31), lt=2**31)
    useTimestampAsPersistenceTimestamp: bool | None = None

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str | None) -> str | None:
        if value is not None and value not in _property_sources():
            raise ValueError("not one of HubSpot's property sources (see PropertyValue.source)")
        return value


class MarketingEvent(_Strict):
    """HubSpot's create body (`MarketingEventCreateRequestParams`), validated strictly."""

    externalAccountId: Id
    externalEventId: Id
    eventName: Name
    eventOrganizer: Name
    customProperties: list[CustomProperty] = Field(default_factory=list, max_length=500)
    eventType: ShortText | None = None
    eventDescription: LongText | None = None
    eventUrl: Url | None = None
    eventCancelled: bool | None = None
    eventCompleted: bool | None = None
    startDateTime: AwareDatetime | None = None
    endDateTime: AwareDatetime | None = None

    @field_validator("startDateTime", "endDateTime")
    @classmethod
    def _expressible_in_utc(cls, value: datetime | None) -> datetime | None:
        try:
            return None if value is None else value.astimezone(UTC)
        except OverflowError:
            raise ValueError("cannot be expressed as a UTC time (out of range)") from None

    @model_validator(mode="after")
    def _end_not_before_start(self) -> MarketingEvent:
        if self.startDateTime and self.endDateTime and self.endDateTime < self.startDateTime:
            raise ValueError("endDateTime is before startDateTime")
        return self

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

    jobId: Annotated[str, StringConstraints(min_length=1, max_length=128)] = Field(
        default_factory=new_job_id
    )
    attempt: int = Field(1, ge=1, description="Number of the attempt this message carries.")
    firstEnqueuedAt: AwareDatetime = Field(default_factory=_now)
    source: JobSource = "raw"
    portalId: Id | None = Field(None, description="HubSpot account (portal) id, OAuth mode.")
    priority: Literal["live", "bulk"] = Field(
        "live", description="`bulk` (replays, backfills) goes to the lower-priority queue."
    )
    event: MarketingEvent

    @field_serializer("firstEnqueuedAt")
    def _utc(self, value: datetime) -> str:
        return format_utc(value)

    def summary(self) -> str:
        """Return the Flower/log summary: account, external id, name, attempt."""
        portal = f"portal {self.portalId} " if self.portalId else ""
        return f"{portal}{self.event.summary()} attempt {self.attempt}"

    def next_attempt(self) -> JobEnvelope:
        """Return a copy carrying the next attempt number."""
        return self.model_copy(update={"attempt": self.attempt + 1})
