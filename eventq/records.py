"""Typed records eventq keeps in Redis: job status, attempt history and dead-letter entries."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AttemptRecord",
    "AuditAction",
    "AuditEntry",
    "AuditVia",
    "DeadLetter",
    "DeadLetterReason",
    "HubSpotErrorInfo",
    "JobState",
    "JobStatus",
]

JobState = Literal["queued", "in_progress", "retrying", "delivered", "dead_lettered"]
DeadLetterReason = Literal["invalid", "rejected", "auth", "exhausted", "callback"]
AuditAction = Literal["login", "logout", "replay", "dry_run", "delete"]
AuditVia = Literal["bearer", "session", "cli"]


class AttemptRecord(BaseModel):
    """One attempt (or one decision not to send) of a job, in the order they happened."""

    model_config = ConfigDict(extra="ignore")

    attempt: int
    at: float = Field(description="Epoch seconds when the attempt ended.")
    outcome: str = Field(description="delivered, found, retry, paused, dead_letter, skipped…")
    httpStatus: int | None = None
    latencyMs: float | None = None
    detail: str = ""
    correlationId: str | None = None
    batch: str | None = Field(None, description="Id of the batch upsert the attempt was sent in.")
    batchSize: int | None = Field(None, description="How many jobs that batch upsert carried.")


class HubSpotErrorInfo(BaseModel):
    """The parts of HubSpot's error body an admin needs (never any credential)."""

    message: str = ""
    category: str | None = None
    correlationId: str | None = None
    errors: list[dict[str, Any]] = Field(default_factory=list)


class JobStatus(BaseModel):
    """What `eventq status` and `GET /v1/jobs/{jobId}` show."""

    jobId: str
    state: JobState
    attempts: int = Field(
        0,
        description=(
            "Attempts used from the retry budget since the job was last queued (a replay from"
            " the dead-letter queue starts a fresh budget)."
        ),
    )
    lastAttempt: int | None = Field(
        None,
        description=(
            "Number of the last attempt in the history, counted from the job's first enqueue"
            " (replays included); None before the first."
        ),
    )
    lastStatus: int | None = Field(
        None, description="HTTP status HubSpot answered to the last attempt (None: no answer)."
    )
    source: str = "raw"
    summary: str = ""
    objectId: str | None = None
    lastError: str | None = Field(
        None, description="Why the last attempt failed; None once the job is delivered."
    )
    deadLetterId: str | None = None
    nextAttemptAt: float | None = None
    createdAt: float
    updatedAt: float
    history: list[AttemptRecord] = Field(default_factory=list)


class DeadLetter(BaseModel):
    """One dead-letter entry: enough to see why a job failed, fix it and replay it."""

    id: str
    jobId: str
    payload: dict[str, Any] = Field(description="The event as it was sent (may be invalid).")
    portalId: str | None = None
    reason: DeadLetterReason
    httpStatus: int | None = None
    error: HubSpotErrorInfo = Field(default_factory=HubSpotErrorInfo)
    attempts: list[AttemptRecord] = Field(default_factory=list)
    source: str = "raw"
    callbackUrl: str | None = Field(
        None, description="The job's callback URL (a replay keeps it; `callback`: the failed one)."
    )
    firstEnqueuedAt: float
    deadLetteredAt: float


class AuditEntry(BaseModel):
    """One admin action: who (the key's name, never the key), what, on which entries, outcome."""

    id: str = Field("", description="Stream id of the entry (also the pagination cursor).")
    at: float = Field(description="Epoch seconds when the action finished.")
    keyName: str = Field(description="The API key's configured name; for `via: cli`, the OS user.")
    via: AuditVia
    action: AuditAction
    ids: list[str] = Field(default_factory=list, description="Dead-letter ids acted on.")
    outcome: str = Field(description="What happened, e.g. `replayed=2 invalid=1` or `deleted`.")
    patched: bool = Field(False, description="True when a merge patch or new payload was applied.")
