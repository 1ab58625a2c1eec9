"""DLQ replay: re-validate (optionally after a JSON merge-patch), re-enqueue, then delete.

The entry is deleted only after the new attempt is accepted by the broker (many entries are
published `EVENTQ_PACK_SIZE` to a message), so a crash midway loses nothing; an entry that is
still invalid stays, with the new error recorded on it. Replays go to the bulk queue (below live
traffic) and are re-sent with create-or-update, so a replay never creates an event twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from eventq.callbacks import Callback
from eventq.dead_letters import DeadLetterStore
from eventq.jobs import current_attempt, reopen_job
from eventq.messaging import send_callback, send_job, send_pack
from eventq.records import AttemptRecord, DeadLetter, HubSpotErrorInfo
from eventq.schema import JobEnvelope
from producers.enqueue import FieldError, Producer, RejectedEvent, validate_event

__all__ = ["ReplayResult", "Replayer", "merge_patch"]

ReplayStatus = Literal["replayed", "would_replay", "invalid", "missing", "already_live"]


@dataclass(frozen=True)
class ReplayResult:
    """What happened to one entry; `invalid` comes with the field errors."""

    entry_id: str
    status: ReplayStatus
    job_id: str | None = None
    detail: str = ""
    errors: list[FieldError] = field(default_factory=list)


def merge_patch(target: Any, patch: Any) -> Any:
    """Return `target` with the JSON merge-patch (RFC 7396) `patch` applied."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class Replayer:
    """Replays dead-letter entries through a producer."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self.store = DeadLetterStore(producer.redis, producer.keys)

    def replay_ids(
        self,
        entry_ids: Iterable[str],
        *,
        dry_run: bool = False,
        patch: Mapping[str, Any] | None = None,
    ) -> Iterable[ReplayResult]:
        """Yield one result per id, in order.

        The reopened jobs are published `EVENTQ_PACK_SIZE` to a message (as `enqueue_many`
        does), each entry deleted once its pack is accepted by the broker: a replay of
        thousands costs the workers one message per pack, not one per entry.
        """
        found = ((entry_id, self.store.get(entry_id)) for entry_id in entry_ids)
        return self.replay_entries(found, dry_run=dry_run, patch=patch)

    def replay_entries(
        self,
        entries: Iterable[tuple[str, DeadLetter | None]],
        *,
        dry_run: bool = False,
        patch: Mapping[str, Any] | None = None,
        payload: Any = None,
    ) -> Iterable[ReplayResult]:
        """`replay_ids` for entries already read (None: no entry has that id)."""
        held: list[ReplayResult | tuple[DeadLetter, JobEnvelope]] = []
        waiting: list[tuple[DeadLetter, JobEnvelope]] = []
        pack_size = 1 if dry_run else self.producer.settings.pack_size
        for entry_id, entry in entries:
            if entry is None:
                held.append(ReplayResult(entry_id, "missing", detail="no such dead-letter entry"))
            else:
                prepared = self._prepare(entry, dry_run=dry_run, patch=patch, payload=payload)
                held.append(prepared)
                if not isinstance(prepared, ReplayResult):
                    waiting.append(prepared)
            if len(waiting) >= pack_size or (not waiting and held):
                yield from self._publish(held, waiting)
                held, waiting = [], []
        yield from self._publish(held, waiting)

    def _publish(
        self,
        held: list[ReplayResult | tuple[DeadLetter, JobEnvelope]],
        waiting: list[tuple[DeadLetter, JobEnvelope]],
    ) -> Iterable[ReplayResult]:
        """Publish the reopened jobs in `waiting` as one message, delete their entries, and
        return every held result in order."""
        if len(waiting) == 1:
            send_job(self.producer.app, waiting[0][1], self.producer.settings)
        elif waiting:
            envelopes = [envelope for _, envelope in waiting]
            send_pack(self.producer.app, envelopes, self.producer.settings)
        for entry, _ in waiting:
            self.store.delete(entry.id)
        return [
            item
            if isinstance(item, ReplayResult)
            else ReplayResult(item[0].id, "replayed", item[1].jobId)
            for item in held
        ]

    def replay(
        self,
        entry: DeadLetter,
        *,
        dry_run: bool = False,
        patch: Mapping[str, Any] | None = None,
        payload: Any = None,
    ) -> ReplayResult:
        """Replay one entry, after a merge `patch` or with a replacement `payload` (edit and
        replay); returns what happened (nothing changes with `dry_run`).

        A `callback` entry (a callback that failed every attempt) is sent again as it was:
        its job ended already, so nothing is re-enqueued for HubSpot.
        """
        prepared = self._prepare(entry, dry_run=dry_run, patch=patch, payload=payload)
        if isinstance(prepared, ReplayResult):
            return prepared
        return next(iter(self._publish([prepared], [prepared])))

    def _prepare(
        self,
        entry: DeadLetter,
        *,
        dry_run: bool,
        patch: Mapping[str, Any] | None = None,
        payload: Any = None,
    ) -> ReplayResult | tuple[DeadLetter, JobEnvelope]:
        """Re-validate the entry and reopen its job; return its result when that is final, or
        the entry with the envelope to publish."""
        if entry.reason == "callback":
            return self._replay_callback(entry, dry_run=dry_run)
        if payload is None:
            payload = merge_patch(entry.payload, patch) if patch else entry.payload
        try:
            event = validate_event(payload)
        except RejectedEvent as rejected:
            if not dry_run:
                self._note_refusal(entry, str(rejected))
            return ReplayResult(entry.id, "invalid", detail=str(rejected), errors=rejected.errors)
        if dry_run:
            return ReplayResult(entry.id, "would_replay", entry.jobId)
        envelope = JobEnvelope(
            jobId=entry.jobId,
            event=event,
            source="replay",
            portalId=entry.portalId,
            priority="bulk",
            attempt=self._next_attempt(entry.jobId),
            callbackUrl=entry.callbackUrl,
        )
        live = self._reopen(envelope)
        if live is not None:
            self.store.delete(entry.id)
            return ReplayResult(entry.id, "already_live", live, f"job {live} already has it")
        return entry, envelope

    def _replay_callback(self, entry: DeadLetter, *, dry_run: bool) -> ReplayResult:
        try:
            callback = Callback.model_validate(entry.payload)
        except ValidationError as error:
            return ReplayResult(entry.id, "invalid", detail=f"not a callback: {error}")
        if dry_run:
            return ReplayResult(entry.id, "would_replay", entry.jobId)
        send_callback(self.producer.app, callback, self.producer.settings)
        self.store.delete(entry.id)
        return ReplayResult(entry.id, "replayed", entry.jobId, "callback sent again")

    def _next_attempt(self, job_id: str) -> int:
        return current_attempt(self.producer.redis, self.producer.keys, job_id) + 1

    def _reopen(self, envelope: JobEnvelope) -> str | None:
        """Make the job queued again; returns another live job's id when one has the event.

        One script (`reopen_job.lua`), so a producer enqueueing the same event meanwhile
        cannot leave two live jobs for it.
        """
        record = AttemptRecord(
            attempt=envelope.attempt,
            at=time.time(),
            outcome="replayed",
            detail="replayed from the dead-letter queue",
        )
        return reopen_job(
            self.producer.redis,
            self.producer.keys,
            envelope,
            record,
            dedupe_ttl_s=self.producer.settings.ledger_ttl_s,
        )

    def _note_refusal(self, entry: DeadLetter, message: str) -> None:
        refused = entry.model_copy(
            update={
                "error": HubSpotErrorInfo(message=f"replay refused: {message}", category="INVALID")
            }
        )
        self.store.save(refused)
