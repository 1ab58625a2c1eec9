"""The Python enqueue API: validate, register the job, publish `eventq.create_marketing_event`."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import redis
from celery import Celery
from pydantic import ValidationError

from eventq.accounts import AccountsWatcher, UnknownAccount
from eventq.jobs import create_job, mark_published
from eventq.keys import Keys
from eventq.messaging import make_celery, send_job
from eventq.schema import JobEnvelope, JobSource, MarketingEvent
from eventq.settings import Settings, get_settings

__all__ = [
    "EnqueueResult",
    "FieldError",
    "Producer",
    "RejectedEvent",
    "enqueue_event",
    "enqueue_events",
    "field_errors",
]


@dataclass(frozen=True)
class FieldError:
    """A problem with a field: `field` is a dotted path (`customProperties.0.name`)."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class RejectedEvent(ValueError):
    """The event is invalid; `errors` names every bad field. Nothing was enqueued."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class EnqueueResult:
    """The outcome of enqueueing one item: a job id, or the reasons it was rejected."""

    index: int
    job_id: str | None = None
    duplicate: bool = False
    errors: list[FieldError] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        """Return True when the item has a job (new or existing)."""
        return self.job_id is not None


def field_errors(error: ValidationError) -> list[FieldError]:
    """Return pydantic's errors as field paths and messages."""
    found = []
    for item in error.errors():
        path = ".".join(str(part) for part in item["loc"]) or "event"
        found.append(FieldError(path, item["msg"].removeprefix("Value error, ")))
    return found


def validate_event(event: Mapping[str, Any] | MarketingEvent) -> MarketingEvent:
    """Return the event as a validated model; raise RejectedEvent naming each bad field."""
    if isinstance(event, MarketingEvent):
        return event
    if not isinstance(event, Mapping):
        raise RejectedEvent([FieldError("event", "expected a JSON object")])
    try:
        return MarketingEvent.model_validate(dict(event))
    except ValidationError as error:
        raise RejectedEvent(field_errors(error)) from None


class Producer:
    """Enqueues jobs: one Redis client and one Celery producer app, reused across calls."""

    def __init__(self, settings: Settings | None = None, app: Celery | None = None) -> None:
        self.settings = settings or get_settings()
        self.app = app or make_celery(self.settings, "eventq-producer")
        self.redis = redis.Redis.from_url(self.settings.redis_url)
        self.keys = Keys(self.settings.key_prefix)
        # OAuth: jobs must name a configured account (or get the default); SettingsError if bad
        self.accounts = AccountsWatcher(self.settings) if self.settings.oauth_enabled else None

    def enqueue(
        self,
        event: Mapping[str, Any] | MarketingEvent,
        *,
        source: JobSource = "api",
        portal_id: str | None = None,
        priority: Literal["live", "bulk"] = "live",
        idempotency_key: str | None = None,
    ) -> tuple[str, bool]:
        """Validate and enqueue one event; returns (job id, duplicate).

        Raises RejectedEvent for an invalid event or (OAuth mode) an unknown `portalId`.
        """
        model = validate_event(event)
        portal_id = self.account_for(portal_id)
        envelope = JobEnvelope(event=model, source=source, portalId=portal_id, priority=priority)
        idem = hashlib.sha256(idempotency_key.encode()).hexdigest() if idempotency_key else None
        return self.submit(envelope, idempotency_hash=idem)

    def submit(
        self, envelope: JobEnvelope, *, idempotency_hash: str | None = None
    ) -> tuple[str, bool]:
        """Register and publish a validated envelope; returns (job id, duplicate).

        The job is recorded before its message is published and marked published after, so a
        producer that dies in between leaves a record that the next identical request (or the
        workers' recovery sweep) publishes: an accepted job always has a message.
        """
        created = create_job(
            self.redis,
            self.keys,
            envelope,
            dedupe_ttl_s=self.settings.ledger_ttl_s,
            idempotency_hash=idempotency_hash,
        )
        if created.needs_publish:
            stored = envelope if not created.duplicate else self._stored(created.job_id)
            if stored is not None:
                send_job(self.app, stored, self.settings)
                mark_published(self.redis, self.keys, created.job_id)
        return created.job_id, created.duplicate

    def _stored(self, job_id: str) -> JobEnvelope | None:
        raw = cast(bytes | None, self.redis.hget(self.keys.job(job_id), "envelope"))
        return None if raw is None else JobEnvelope.model_validate_json(raw)

    def account_for(self, portal_id: str | None) -> str | None:
        """Return the job's account: its own if configured, else the default (OAuth mode).

        Without OAuth the id passes through unchanged. Raises RejectedEvent naming `portalId`
        for an account that is not configured (or none given and no default).
        """
        if self.accounts is None:
            return portal_id
        try:
            return self.accounts.current().resolve(portal_id)
        except UnknownAccount as error:
            raise RejectedEvent([FieldError("portalId", str(error))]) from None

    def enqueue_many(
        self, events: Iterable[Mapping[str, Any] | MarketingEvent], **options: Any
    ) -> list[EnqueueResult]:
        """Enqueue each valid event; invalid ones are reported, never block the others."""
        results = []
        for index, event in enumerate(events):
            try:
                job_id, duplicate = self.enqueue(event, **options)
            except RejectedEvent as rejected:
                results.append(EnqueueResult(index, errors=rejected.errors))
            else:
                results.append(EnqueueResult(index, job_id, duplicate))
        return results


_default: Producer | None = None
_default_lock = threading.Lock()


def default_producer() -> Producer:
    """Return the process-wide producer built from the environment's settings."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Producer()
        return _default


def enqueue_event(event: Mapping[str, Any] | MarketingEvent, **options: Any) -> str:
    """Validate and enqueue one marketing event; returns its job id.

    Raises RejectedEvent (with `.errors`, one per bad field) when the event is invalid.
    Sending the same event (externalAccountId, externalEventId) again while its job is live
    returns the existing job id.
    """
    job_id, _ = default_producer().enqueue(event, **options)
    return job_id


def enqueue_events(
    events: Iterable[Mapping[str, Any] | MarketingEvent], **options: Any
) -> list[EnqueueResult]:
    """Enqueue many events; returns one EnqueueResult per item, in order."""
    return default_producer().enqueue_many(events, **options)
