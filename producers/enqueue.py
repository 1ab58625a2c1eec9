"""The Python enqueue API: validate, register the job, publish `eventq.create_marketing_event`."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from celery import Celery
from pydantic import ValidationError

from eventq.accounts import AccountsWatcher, UnknownAccount
from eventq.callbacks import host_allowed
from eventq.durable_writes import confirm_writes
from eventq.errors import InvalidInput
from eventq.event_warnings import FieldWarning, event_warnings
from eventq.jobs import Created, create_jobs, mark_published, stored_envelopes
from eventq.keys import Keys
from eventq.messaging import make_celery, queue_for, send_job, send_pack
from eventq.redis_conn import sync_client
from eventq.schema import (
    JobEnvelope,
    JobSource,
    MarketingEvent,
    callback_host,
    check_callback_url,
)
from eventq.settings import Settings, get_settings
from eventq.tracing import current_carrier

__all__ = [
    "EnqueueResult",
    "FieldError",
    "FieldWarning",
    "Producer",
    "RejectedEvent",
    "enqueue_event",
    "enqueue_events",
    "field_errors",
]

log = logging.getLogger("eventq.producer")


@dataclass(frozen=True)
class FieldError:
    """A problem with a field: `field` is a dotted path (`customProperties.0.name`)."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class RejectedEvent(InvalidInput, ValueError):
    """The event is invalid; `errors` names every bad field (`field` is the first). Nothing was
    enqueued."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(
            "; ".join(str(e) for e in errors),
            field=errors[0].field if errors else None,
            fix="correct the named fields and enqueue the event again",
        )
        self.errors = errors


@dataclass(frozen=True)
class EnqueueResult:
    """The outcome of enqueueing one item: a job id, or the reasons it was rejected.

    `warnings` is eventq's advice on an accepted item (HubSpot accepts it; see README). For a
    duplicate, `existing_state` is the state of the job that answered (live, or `delivered`
    within `EVENTQ_DEDUPE_WINDOW_S`) and `delivered_at` when it was delivered.
    """

    index: int
    job_id: str | None = None
    duplicate: bool = False
    errors: list[FieldError] = field(default_factory=list)
    warnings: list[FieldWarning] = field(default_factory=list)
    existing_state: str | None = None
    delivered_at: float | None = None

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


def check_event(
    event: Mapping[str, Any] | MarketingEvent,
) -> tuple[MarketingEvent, list[FieldWarning]]:
    """Return the validated event and eventq's warnings on it; raise RejectedEvent if invalid."""
    model = validate_event(event)
    return model, event_warnings(model, None if isinstance(event, MarketingEvent) else event)


def make_envelope(
    event: MarketingEvent,
    *,
    source: JobSource,
    portal_id: str | None,
    priority: Literal["live", "bulk"],
    callback_url: str | None = None,
) -> JobEnvelope:
    """Return the job envelope of a validated event; raise RejectedEvent for a bad option."""
    try:
        return JobEnvelope(
            event=event,
            source=source,
            portalId=portal_id,
            priority=priority,
            callbackUrl=callback_url,
            traceContext=current_carrier(),
        )
    except ValidationError as error:
        raise RejectedEvent(field_errors(error)) from None


class Producer:
    """Enqueues jobs: one Redis client and one Celery producer app, reused across calls."""

    def __init__(self, settings: Settings | None = None, app: Celery | None = None) -> None:
        self.settings = settings or get_settings()
        self.app = app or make_celery(self.settings, "eventq-producer")
        self.redis = sync_client(self.settings)
        self.keys = Keys(self.settings.key_prefix)
        self._declared: set[str] = set()  # queues this producer has declared
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
        callback_url: str | None = None,
    ) -> tuple[str, bool]:
        """Validate and enqueue one event; returns (job id, duplicate).

        Raises RejectedEvent for an invalid event or (OAuth mode) an unknown `portalId`.
        `enqueue_one` takes the same arguments and also returns the warnings.
        """
        result = self.enqueue_one(
            event,
            source=source,
            portal_id=portal_id,
            priority=priority,
            idempotency_key=idempotency_key,
            callback_url=callback_url,
        )
        assert result.job_id is not None  # enqueue_one raises instead of rejecting
        return result.job_id, result.duplicate

    def enqueue_one(
        self,
        event: Mapping[str, Any] | MarketingEvent,
        *,
        source: JobSource = "api",
        portal_id: str | None = None,
        priority: Literal["live", "bulk"] = "live",
        idempotency_key: str | None = None,
        callback_url: str | None = None,
    ) -> EnqueueResult:
        """Validate and enqueue one event; returns its result (job id, duplicate, warnings).

        Raises RejectedEvent for an invalid event, (OAuth mode) an unknown `portalId`, or a
        `callback_url` whose host is not allowed (EVENTQ_CALLBACK_ALLOWED_HOSTS).
        """
        model, warnings = check_event(event)
        portal_id = self.account_for(portal_id)
        self.check_callback(callback_url)
        envelope = make_envelope(
            model,
            source=source,
            portal_id=portal_id,
            priority=priority,
            callback_url=callback_url,
        )
        created = self.submit_many([(envelope, idempotency_hash(idempotency_key))])[0]
        return _result(0, created, warnings)

    def submit(
        self, envelope: JobEnvelope, *, idempotency_hash: str | None = None
    ) -> tuple[str, bool]:
        """Register and publish a validated envelope; returns (job id, duplicate)."""
        created = self.submit_many([(envelope, idempotency_hash)])[0]
        return created.job_id, created.duplicate

    def submit_many(self, items: Sequence[tuple[JobEnvelope, str | None]]) -> list[Created]:
        """Register validated envelopes in one pipeline and publish them in one kombu batch.

        Each job is recorded before its message is published and marked published after, so a
        producer that dies in between leaves a record that the next identical request (after a
        grace period) or the workers' recovery sweep publishes: an accepted job always gets a
        message. Returns one `Created` per item, in order.
        """
        created = create_jobs(
            self.redis,
            self.keys,
            items,
            dedupe_ttl_s=self.settings.ledger_ttl_s,
            dedupe_window_s=self.settings.dedupe_window_s,
        )
        fresh = [
            env
            for (env, _), c in zip(items, created, strict=True)
            if c.needs_publish and not c.duplicate
        ]
        fresh_ids = {env.jobId for env in fresh}
        # a repeat of an item earlier in this same call is published with it, not again
        stale = {c.job_id for c in created if c.needs_publish and c.duplicate} - fresh_ids
        self._publish([*fresh, *stored_envelopes(self.redis, self.keys, sorted(stale))])
        confirm_writes(self.redis, self.settings)  # EVENTQ_REDIS_DURABLE_WRITES: on replicas
        return created

    def _publish(self, envelopes: list[JobEnvelope]) -> None:
        """Publish through one held kombu producer (one pipeline), then mark them published.

        Jobs of one queue go `EVENTQ_PACK_SIZE` to a message (`send_pack`); a message that
        would carry one job is the single-event message (`send_job`).
        """
        if not envelopes:
            return
        declared: set[str] = set()
        messages = _packs(envelopes, self.settings)
        with self.app.producer_or_acquire() as producer, producer.batch(3 * len(messages)):
            for pack in messages:
                queue = queue_for(pack[0], self.settings)
                declare = queue not in declared and queue not in self._declared
                if len(pack) == 1:
                    send_job(self.app, pack[0], self.settings, producer=producer, declare=declare)
                else:
                    send_pack(self.app, pack, self.settings, producer=producer, declare=declare)
                declared.add(queue)
        self._declared |= declared
        mark_published(self.redis, self.keys, [e.jobId for e in envelopes])

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

    def check_callback(self, url: str | None) -> None:
        """Raise RejectedEvent naming `callbackUrl` when `url` is not a URL eventq may call."""
        if url is None:
            return
        try:
            check_callback_url(url)
        except ValueError as error:
            raise RejectedEvent([FieldError("callbackUrl", str(error))]) from None
        if not host_allowed(url, self.settings.callback_allowed_hosts):
            message = (
                f"host {callback_host(url)!r} is not allowed: add it to "
                "EVENTQ_CALLBACK_ALLOWED_HOSTS (callbacks call only the hosts listed there)"
            )
            raise RejectedEvent([FieldError("callbackUrl", message)])

    def enqueue_many(
        self,
        events: Iterable[Mapping[str, Any] | MarketingEvent],
        *,
        source: JobSource = "api",
        portal_id: str | None = None,
        priority: Literal["live", "bulk"] = "live",
        idempotency_key: str | None = None,
        callback_url: str | None = None,
    ) -> list[EnqueueResult]:
        """Enqueue each valid event (one pipeline, one publish batch); returns one result each.

        Invalid items are reported with their field errors and never block the others. An
        `idempotency_key` applies per item (the key and the item's index).
        """
        items = list(events)
        try:
            portal = self.account_for(portal_id)
            self.check_callback(callback_url)
        except RejectedEvent as rejected:  # no item can be enqueued
            return [EnqueueResult(i, errors=rejected.errors) for i in range(len(items))]
        results: dict[int, EnqueueResult] = {}
        pending: list[tuple[int, JobEnvelope, str | None]] = []
        advice: dict[int, list[FieldWarning]] = {}
        for index, item in enumerate(items):
            try:
                event, advice[index] = check_event(item)
            except RejectedEvent as rejected:
                results[index] = EnqueueResult(index, errors=rejected.errors)
                continue
            try:
                envelope = make_envelope(
                    event,
                    source=source,
                    portal_id=portal,
                    priority=priority,
                    callback_url=callback_url,
                )
            except RejectedEvent as rejected:
                results[index] = EnqueueResult(index, errors=rejected.errors)
                continue
            pending.append((index, envelope, idempotency_hash(idempotency_key, index)))
        created = self.submit_many([(envelope, idem) for _, envelope, idem in pending])
        for (index, _, _), done in zip(pending, created, strict=True):
            results[index] = _result(index, done, advice[index])
        return [results[index] for index in range(len(items))]


def _result(index: int, created: Created, warnings: list[FieldWarning]) -> EnqueueResult:
    """Return the result of an accepted item from what `create_jobs` did."""
    delivered = created.state == "delivered"
    return EnqueueResult(
        index,
        created.job_id,
        created.duplicate,
        warnings=warnings,
        existing_state=created.state,
        delivered_at=created.updated_at if delivered else None,
    )


def _packs(envelopes: Sequence[JobEnvelope], settings: Settings) -> list[list[JobEnvelope]]:
    """Return the envelopes grouped by queue, in order, `settings.pack_size` to a message."""
    by_queue: dict[str, list[JobEnvelope]] = {}
    for envelope in envelopes:
        by_queue.setdefault(queue_for(envelope, settings), []).append(envelope)
    size = settings.pack_size
    return [
        group[start : start + size]
        for group in by_queue.values()
        for start in range(0, len(group), size)
    ]


def idempotency_hash(key: str | None, index: int | None = None) -> str | None:
    """Return the hash naming an `Idempotency-Key` (per item of a batch when `index` is given)."""
    if key is None:
        return None
    scoped = key if index is None else f"{key}\x00{index}"
    return hashlib.sha256(scoped.encode()).hexdigest()


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
    returns the existing job id. Warnings are logged (`Producer.enqueue_one` returns them).
    """
    result = default_producer().enqueue_one(event, **options)
    for warning in result.warnings:
        log.warning("event accepted with a warning: job %s %s", result.job_id, warning)
    assert result.job_id is not None  # enqueue_one raises instead of rejecting
    return result.job_id


def enqueue_events(
    events: Iterable[Mapping[str, Any] | MarketingEvent], **options: Any
) -> list[EnqueueResult]:
    """Enqueue many events; returns one EnqueueResult per item, in order."""
    return default_producer().enqueue_many(events, **options)
