"""The outcome stream: one entry per job that ended, for the services that enqueue to read.

When a job ends (delivered or dead-lettered), the same transaction that records its state
appends one entry to the Redis stream `<prefix>:outcomes` (`XADD … MAXLEN ~
EVENTQ_OUTCOME_STREAM_MAX_LEN`): no extra round trip, and no outcome recorded without its entry
or the other way round. An entry has one field, `outcome`, the JSON of `JobOutcome` (the same
body a callback carries), and `callbackUrl` when the job asked for a callback. Services read it
with a consumer group (`XREADGROUP`; `examples/outcome_consumer.py`), so each reader of a
group sees each entry once. Entries hold no payload values and no secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from eventq.keys import Keys
from eventq.records import DeadLetter, DeadLetterReason
from eventq.redis_io import as_text
from eventq.schema import JobEnvelope

__all__ = [
    "OUTCOME_FIELD",
    "DeadLetterOutcome",
    "JobOutcome",
    "StreamedOutcome",
    "dead_lettered_outcome",
    "delivered_outcome",
    "outcome_fields",
    "parse_entry",
    "queue_outcome",
]

OUTCOME_FIELD = "outcome"
CALLBACK_FIELD = "callbackUrl"


class DeadLetterOutcome(BaseModel):
    """Why a job was dead-lettered: the DLQ entry's reason, HubSpot's status and message."""

    id: str = Field(description="The dead-letter entry's id (`eventq dlq show ID`).")
    reason: DeadLetterReason
    httpStatus: int | None = None
    message: str = ""


class JobOutcome(BaseModel):
    """How a job ended: the outcome stream's entry and a callback's body."""

    jobId: str
    state: Literal["delivered", "dead_lettered"]
    objectId: str | None = Field(None, description="HubSpot's id of the event (delivered).")
    externalAccountId: str | None = None
    externalEventId: str | None = None
    deadLetter: DeadLetterOutcome | None = None
    attempts: int = Field(description="Number of the job's last attempt (replays included).")
    at: float = Field(description="Epoch seconds when the job ended.")


class StreamedOutcome(BaseModel):
    """One entry read back from the outcome stream."""

    id: str = Field(description="The stream entry's id (also the callback's `webhook-id`).")
    outcome: JobOutcome
    callbackUrl: str | None = None


def delivered_outcome(
    envelope: JobEnvelope, object_id: str | None, *, attempt: int, at: float
) -> JobOutcome:
    """Return the outcome of a job delivered by its attempt number `attempt`."""
    event = envelope.event
    return JobOutcome(
        jobId=envelope.jobId,
        state="delivered",
        objectId=object_id,
        externalAccountId=event.externalAccountId,
        externalEventId=event.externalEventId,
        attempts=attempt,
        at=at,
    )


def _text_field(payload: Mapping[str, Any], name: str) -> str | None:
    value = payload.get(name)
    return value if isinstance(value, str) else None


def dead_lettered_outcome(entry: DeadLetter, *, attempt: int) -> JobOutcome:
    """Return the outcome of a job dead-lettered as `entry` by its attempt number `attempt`."""
    return JobOutcome(
        jobId=entry.jobId,
        state="dead_lettered",
        externalAccountId=_text_field(entry.payload, "externalAccountId"),
        externalEventId=_text_field(entry.payload, "externalEventId"),
        deadLetter=DeadLetterOutcome(
            id=entry.id,
            reason=entry.reason,
            httpStatus=entry.httpStatus,
            message=entry.error.message,
        ),
        attempts=attempt,
        at=entry.deadLetteredAt,
    )


def outcome_fields(outcome: JobOutcome, callback_url: str | None) -> dict[str, str]:
    """Return the stream entry's fields (a Lua script that ends a job passes them to XADD)."""
    fields = {OUTCOME_FIELD: outcome.model_dump_json()}
    if callback_url:
        fields[CALLBACK_FIELD] = callback_url
    return fields


def queue_outcome(
    pipe: Any, keys: Keys, outcome: JobOutcome, *, callback_url: str | None, max_len: int
) -> None:
    """Queue on `pipe` (sync or async, the transaction that ends the job) the entry's XADD."""
    pipe.xadd(
        keys.outcomes, outcome_fields(outcome, callback_url), maxlen=max_len, approximate=True
    )


def parse_entry(entry_id: bytes | str, fields: Mapping[Any, Any]) -> StreamedOutcome:
    """Return one stream entry (as XREAD / XREADGROUP answer it) as a `StreamedOutcome`."""
    values = {as_text(k): as_text(v) for k, v in fields.items()}
    return StreamedOutcome(
        id=as_text(entry_id),
        outcome=JobOutcome.model_validate_json(values[OUTCOME_FIELD]),
        callbackUrl=values.get(CALLBACK_FIELD),
    )
