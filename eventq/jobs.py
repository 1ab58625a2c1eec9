"""The job record: a Redis hash per job, its envelope and history, and every command on them.

A job is its hash of short fields (state, attempts, …; small enough for Redis to keep it as a
listpack), the JSON envelope its next attempt carries (its own string key, deleted once the job
ends) and its attempt history (a list).

This module is the record's only home. It owns the hash's field names (`JobField`; the Lua
scripts in `eventq/lua/` spell the same names, and `tests/unit/test_job_record.py` checks that no
other Python module does), every script that changes a job (`create_job`, `begin_attempt`,
`mark_delivered`, `reopen_job`, `claim_due`, `confirm_moved`) and every read of a job's fields.
Producers, the CLI and the recovery sweep call the synchronous functions; workers and the HTTP
service use the asyncio `JobStore`. Where both need an operation, its commands are written once
(a `_queue_*` function that queues them on a sync or async pipeline, a `_parse_*` function that
reads the replies) and the two wrappers only execute. A dead-lettered job's entry is written by
`JobStore.mark_dead_lettered` through the DLQ's own command builder (`eventq.dead_letters`),
in the same transaction as the job's state change.

How attempts are counted: the hash's `attempts` is the retry budget used since the job was last
queued (a replay starts a fresh budget); the attempt *number* (`JobStatus.lastAttempt`) counts
from the job's first enqueue, replays included. `JobStatus.lastError`, `lastStatus` and
`lastAttempt` describe the last attempt only: a delivered job shows no error.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

import redis
import redis.asyncio as aioredis

from eventq.activity import KEEP_S as ACTIVITY_KEEP_S
from eventq.activity import count_outcome
from eventq.dead_letters import queue_add_entry
from eventq.durable_writes import Durability
from eventq.keys import Keys, event_identity, is_valid_id
from eventq.outcomes import (
    dead_lettered_outcome,
    delivered_outcome,
    outcome_fields,
    queue_outcome,
)
from eventq.records import AttemptRecord, DeadLetter, JobStatus
from eventq.redis_io import as_text, glob_escape, load_lua, wait
from eventq.schema import JobEnvelope

__all__ = [
    "JOB_FIELDS",
    "BeginStatus",
    "Begun",
    "Created",
    "JobField",
    "JobStore",
    "RecoveryView",
    "claim_due",
    "confirm_moved",
    "create_job",
    "create_jobs",
    "current_attempt",
    "job_ids_starting",
    "job_state",
    "job_status",
    "job_statuses",
    "mark_published",
    "park_for_retry",
    "record_republished",
    "recovery_view",
    "reopen_job",
    "stored_envelopes",
]

BeginStatus = Literal["ok", "done", "stale", "locked"]


class JobField:
    """The job hash's field names (the Lua scripts spell the same ones)."""

    JOB_ID: Final = "jobId"
    STATE: Final = "state"
    ATTEMPT: Final = "attempt"  # number of the attempt the next (or current) message carries
    ATTEMPTS: Final = "attempts"  # attempts used from the retry budget since last queued
    VERIFY: Final = "verify"  # 1: an earlier attempt may have landed; do not blindly POST
    SOURCE: Final = "source"
    SUMMARY: Final = "summary"
    OBJECT_ID: Final = "objectId"
    LAST_ERROR: Final = "lastError"
    DEAD_LETTER_ID: Final = "deadLetterId"
    NEXT_ATTEMPT_AT: Final = "nextAttemptAt"
    CREATED_AT: Final = "createdAt"
    UPDATED_AT: Final = "updatedAt"
    DEDUPE_KEY: Final = "dedupeKey"
    PUBLISHED: Final = "published"
    PUBLISH_CLAIM_AT: Final = "publishClaimAt"


JOB_FIELDS: Final = frozenset(
    value for name, value in vars(JobField).items() if name.isupper() and isinstance(value, str)
)

# a duplicate of a job created this recently is not republished: its producer is publishing it
PUBLISH_GRACE_S = 30
_LEDGER_NO_OBJECT_ID = "-"  # ledger value of an event HubSpot accepted without naming its id
_FINISHED = ("delivered", "dead_lettered")
F = JobField


def _identity(envelope: JobEnvelope) -> str:
    event = envelope.event
    return event_identity(envelope.portalId, event.externalAccountId, event.externalEventId)


def _envelope_suffix(keys: Keys) -> str:
    """Return what follows a job's id in its envelope key (the Lua scripts build that key)."""
    return keys.job_envelope("").removeprefix(keys.job(""))


def _text_or_none(value: Any) -> str | None:
    return None if value is None else as_text(value)


# --- producers: create, publish, reopen (sync) ------------------------------------------------


@dataclass(frozen=True)
class Created:
    """What `create_job` did: the job id, whether it already existed, whether to publish it.

    For a duplicate, `state` is the existing job's state and `updated_at` when it last changed
    (for a delivered job: when it was delivered).
    """

    job_id: str
    duplicate: bool
    needs_publish: bool
    state: str | None = None
    updated_at: float | None = None


def create_jobs(
    client: redis.Redis,
    keys: Keys,
    items: Sequence[tuple[JobEnvelope, str | None]],
    *,
    dedupe_ttl_s: int,
    dedupe_window_s: int,
) -> list[Created]:
    """Record each (envelope, idempotency hash) as a queued job, in one pipeline.

    Each item is atomic on its own (create_job.lua): a duplicate answers the existing job, and
    `needs_publish` is also True for a duplicate whose message was never published (its
    producer died between the two steps, or is still publishing it after a grace period).
    The same event is a duplicate while its job is live and for `dedupe_window_s` after it was
    delivered; the same idempotency key, while its job is not dead-lettered.
    """
    if not items:
        return []
    script = client.register_script(load_lua("create_job"))
    now = time.time()
    with client.pipeline(transaction=False) as pipe:
        for envelope, idempotency_hash in items:
            script(
                keys=[
                    keys.job(envelope.jobId),
                    keys.dedupe(_identity(envelope)),
                    keys.idempotency(idempotency_hash) if idempotency_hash else "",
                    keys.unfinished,
                    keys.ledger(_identity(envelope)),
                    keys.job_envelope(envelope.jobId),
                ],
                args=[
                    envelope.jobId,
                    now,
                    envelope.source,
                    envelope.summary(),
                    dedupe_ttl_s,
                    keys.job(""),
                    envelope.to_json(),
                    PUBLISH_GRACE_S,
                    dedupe_window_s,
                ],
                client=pipe,
            )
        answers = pipe.execute()
    return [_created(*answer) for answer in answers]


def _created(job: Any, duplicate: Any, publish: Any, state: Any, updated_at: Any) -> Created:
    state_text, updated_text = as_text(state), as_text(updated_at)
    return Created(
        as_text(job),
        bool(duplicate),
        bool(publish),
        state=state_text or None,
        updated_at=float(updated_text) if updated_text else None,
    )


def create_job(
    client: redis.Redis,
    keys: Keys,
    envelope: JobEnvelope,
    *,
    dedupe_ttl_s: int,
    dedupe_window_s: int = 0,
    idempotency_hash: str | None = None,
) -> Created:
    """Record one job; see `create_jobs`."""
    return create_jobs(
        client,
        keys,
        [(envelope, idempotency_hash)],
        dedupe_ttl_s=dedupe_ttl_s,
        dedupe_window_s=dedupe_window_s,
    )[0]


def mark_published(client: Any, keys: Keys, job_ids: Iterable[str]) -> None:
    """Record that the jobs' messages reached the broker (`client` may be a pipeline)."""
    with client.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hset(keys.job(job_id), F.PUBLISHED, 1)
        pipe.execute()


def stored_envelopes(client: redis.Redis, keys: Keys, job_ids: Sequence[str]) -> list[JobEnvelope]:
    """Return the stored envelopes of the jobs, in order, skipping jobs that no longer exist."""
    if not job_ids:
        return []
    with client.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.get(keys.job_envelope(job_id))
        raws = pipe.execute()
    return [JobEnvelope.model_validate_json(raw) for raw in raws if raw is not None]


def job_state(client: redis.Redis, keys: Keys, job_id: str) -> str | None:
    """Return the job's state (`queued`, …), or None for an unknown or expired job."""
    return _text_or_none(client.hget(keys.job(job_id), F.STATE))


def job_ids_starting(client: redis.Redis, keys: Keys, prefix: str, limit: int) -> list[str]:
    """Return up to `limit` ids of existing jobs that start with `prefix`, sorted.

    SCAN MATCH over the job keys (1000 keys a call): a lookup costs a walk of the keyspace, not
    one round trip, so callers ask only for a prefix a user typed.
    """
    base = keys.job("")
    found: set[str] = set()
    for key in client.scan_iter(match=glob_escape(base + prefix) + "*", count=1000):
        job_id = as_text(key)[len(base) :]
        if ":" not in job_id:  # not a job's history, envelope or lock
            found.add(job_id)
            if len(found) >= limit:
                break
    return sorted(found)


def current_attempt(client: redis.Redis, keys: Keys, job_id: str) -> int:
    """Return the number of the job's latest attempt (0 for an unknown job)."""
    value = cast(bytes | str | None, client.hget(keys.job(job_id), F.ATTEMPT))
    return int(value or 0)


def reopen_job(
    client: redis.Redis,
    keys: Keys,
    envelope: JobEnvelope,
    record: AttemptRecord,
    *,
    dedupe_ttl_s: int,
) -> str | None:
    """Make a dead-lettered job queued again with `envelope` (reopen_job.lua, atomic).

    Returns another live job's id when one already has the same event (nothing changed then),
    else None. The reopened job starts a fresh retry budget and is checked against HubSpot first.
    """
    other = client.register_script(load_lua("reopen_job"))(
        keys=[
            keys.job(envelope.jobId),
            keys.dedupe_for(envelope),
            keys.unfinished,
            keys.job_history(envelope.jobId),
            keys.job_envelope(envelope.jobId),
        ],
        args=[
            envelope.jobId,
            record.at,
            envelope.summary(),
            dedupe_ttl_s,
            keys.job(""),
            envelope.to_json(),
            envelope.attempt,
            record.model_dump_json(exclude_none=True),
        ],
    )
    return _text_or_none(other)


# --- the retry schedule and the recovery sweep (sync, worker threads) -------------------------


def claim_due(
    client: redis.Redis, keys: Keys, *, now: float, lease: str, limit: int
) -> list[tuple[str, str]]:
    """Lease up to `limit` due jobs of the retry schedule (claim_due.lua).

    Returns (job id, envelope JSON) pairs; the envelope is "" for a job whose record is gone.
    `lease` is the score (decimal text) the jobs now hold until `confirm_moved`.
    """
    rest = client.register_script(load_lua("claim_due"))(
        keys=[keys.schedule], args=[now, lease, limit, keys.job(""), _envelope_suffix(keys)]
    )
    return [(as_text(i), as_text(raw)) for i, raw in zip(rest[::2], rest[1::2], strict=True)]


def confirm_moved(
    client: redis.Redis, keys: Keys, *, lease: str, now: float, job_ids: Sequence[str]
) -> int:
    """Drop published jobs from the schedule unless re-scheduled meanwhile; returns how many."""
    if not job_ids:
        return 0
    removed = client.register_script(load_lua("confirm_moved"))(
        keys=[keys.schedule, keys.unfinished], args=[lease, now, *job_ids]
    )
    return int(removed)


@dataclass(frozen=True)
class RecoveryView:
    """What the recovery sweep needs to know of one unfinished job."""

    state: str | None  # None: the record expired
    envelope: JobEnvelope | None
    locked: bool
    scheduled: bool

    @property
    def finished(self) -> bool:
        """True when the job is gone or ended (delivered, dead-lettered)."""
        return self.state is None or self.state in _FINISHED


def recovery_view(client: redis.Redis, keys: Keys, job_id: str) -> RecoveryView:
    """Return the job's state, stored envelope, lock and schedule presence (one round trip)."""
    with client.pipeline(transaction=False) as pipe:
        pipe.hget(keys.job(job_id), F.STATE)
        pipe.get(keys.job_envelope(job_id))
        pipe.exists(keys.job_lock(job_id))
        pipe.zscore(keys.schedule, job_id)
        state, raw, locked, scheduled = pipe.execute()
    envelope = None if raw is None else JobEnvelope.model_validate_json(raw)
    return RecoveryView(_text_or_none(state), envelope, bool(locked), scheduled is not None)


def record_republished(client: redis.Redis, keys: Keys, envelope: JobEnvelope) -> None:
    """Record that the job's next message carries `envelope` (its new attempt number)."""
    now = time.time()
    with client.pipeline(transaction=True) as pipe:
        pipe.hset(
            keys.job(envelope.jobId),
            mapping={F.ATTEMPT: envelope.attempt, F.UPDATED_AT: now},
        )
        pipe.set(keys.job_envelope(envelope.jobId), envelope.to_json())
        pipe.zadd(keys.unfinished, {envelope.jobId: now})
        pipe.execute()


def park_for_retry(
    client: redis.Redis, keys: Keys, envelopes: Sequence[JobEnvelope], *, due_at: float
) -> None:
    """Write retrying jobs straight into the retry schedule (benchmarks seed a backlog this way).

    Each job has used one attempt and waits for the attempt its envelope carries.
    """
    with client.pipeline(transaction=False) as pipe:
        for envelope in envelopes:
            _queue_retrying(
                pipe, keys, envelope, {F.JOB_ID: envelope.jobId, F.ATTEMPTS: 1}, due_at=due_at
            )
        pipe.execute()


def _queue_retrying(
    pipe: Any, keys: Keys, envelope: JobEnvelope, fields: Mapping[str, Any], *, due_at: float
) -> None:
    """Queue on `pipe` (sync or async) the commands that park `envelope` in the schedule."""
    pipe.hset(
        keys.job(envelope.jobId),
        mapping={
            F.STATE: "retrying",
            F.ATTEMPT: envelope.attempt,
            F.NEXT_ATTEMPT_AT: due_at,
            **fields,
        },
    )
    pipe.set(keys.job_envelope(envelope.jobId), envelope.to_json())
    pipe.zadd(keys.schedule, {envelope.jobId: due_at})


# --- reading one job (sync and async share the commands) --------------------------------------


def _queue_status(pipe: Any, keys: Keys, job_id: str) -> None:
    """Queue on `pipe` the commands `_parse_status` reads back."""
    pipe.hgetall(keys.job(job_id))
    pipe.lrange(keys.job_history(job_id), 0, -1)


def _parse_history(rows: Sequence[Any]) -> list[AttemptRecord]:
    return [AttemptRecord.model_validate_json(row) for row in rows]


def _parse_status(job_id: str, replies: Sequence[Any]) -> JobStatus | None:
    raw, rows = replies
    if not raw:
        return None
    fields = {as_text(k): as_text(v) for k, v in raw.items()}
    history = _parse_history(rows)
    last = history[-1] if history else None
    return JobStatus(
        jobId=fields.get(F.JOB_ID, job_id),
        state=fields[F.STATE],
        attempts=int(fields.get(F.ATTEMPTS, 0)),
        lastAttempt=None if last is None else last.attempt,
        lastStatus=None if last is None else last.httpStatus,
        source=fields.get(F.SOURCE, "raw"),
        summary=fields.get(F.SUMMARY, ""),
        objectId=fields.get(F.OBJECT_ID),
        lastError=fields.get(F.LAST_ERROR),
        deadLetterId=fields.get(F.DEAD_LETTER_ID),
        nextAttemptAt=float(fields[F.NEXT_ATTEMPT_AT]) if F.NEXT_ATTEMPT_AT in fields else None,
        createdAt=float(fields.get(F.CREATED_AT, 0)),
        updatedAt=float(fields.get(F.UPDATED_AT, 0)),
        history=history,
    )


def job_status(client: redis.Redis, keys: Keys, job_id: str) -> JobStatus | None:
    """Return the job's status with its history, or None for an unknown or malformed job id."""
    if not is_valid_id(job_id):
        return None  # no key is built from it
    with client.pipeline(transaction=False) as pipe:
        _queue_status(pipe, keys, job_id)
        return _parse_status(job_id, pipe.execute())


def job_statuses(
    client: redis.Redis, keys: Keys, job_ids: Sequence[str], chunk: int = 1000
) -> list[JobStatus | None]:
    """Return each job's status with its history (None for an unknown id), in `job_ids`' order,
    `chunk` jobs per pipeline round trip."""
    found: list[JobStatus | None] = []
    for start in range(0, len(job_ids), chunk):
        part = job_ids[start : start + chunk]
        with client.pipeline(transaction=False) as pipe:
            for job_id in part:
                _queue_status(pipe, keys, job_id)
            replies = pipe.execute()
        found += [_parse_status(j, replies[2 * i : 2 * i + 2]) for i, j in enumerate(part)]
    return found


# --- workers and the HTTP service (asyncio) ---------------------------------------------------


@dataclass(frozen=True)
class Begun:
    """The answer to "may this worker run this attempt?"."""

    status: BeginStatus
    verify: bool
    attempts: int
    delivered_object_id: str | None = None  # from the delivered ledger: already in HubSpot
    in_ledger: bool = False  # delivered before, possibly without an object id


class JobStore:
    """Async access to job status for workers and the HTTP service."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        *,
        ledger_ttl_s: int,
        job_ttl_s: int,
        durability: Durability | None = None,
        outcome_max_len: int = 100_000,
    ):
        self._redis = client
        self._durability = durability
        self._keys = keys
        self._ledger_ttl_s = ledger_ttl_s
        self._job_ttl_s = job_ttl_s
        self._outcome_max_len = outcome_max_len  # EVENTQ_OUTCOME_STREAM_MAX_LEN
        self._begin = client.register_script(load_lua("begin_attempt"))
        self._delivered = client.register_script(load_lua("mark_delivered"))

    @property
    def keys(self) -> Keys:
        """Return the key names this store uses."""
        return self._keys

    async def begin(
        self, envelope: JobEnvelope, *, raw_envelope: str, lock_ttl_ms: int, now: float
    ) -> Begun:
        """Claim the attempt `envelope.attempt` for this worker; returns why not when refused."""
        status, verify, attempts, ledger = await self._begin(
            keys=[
                self._keys.job(envelope.jobId),
                self._keys.job_lock(envelope.jobId),
                self._keys.unfinished,
                self._keys.ledger(_identity(envelope)),
                self._keys.job_envelope(envelope.jobId),
            ],
            args=[
                envelope.jobId,
                envelope.attempt,
                now,
                lock_ttl_ms,
                envelope.source,
                envelope.summary(),
                raw_envelope,
            ],
        )
        state = cast(BeginStatus, as_text(status))
        entry = as_text(ledger)
        object_id = None if entry in ("", _LEDGER_NO_OBJECT_ID) else entry
        return Begun(state, bool(int(verify)), int(attempts), object_id, in_ledger=bool(entry))

    async def mark_delivered(
        self,
        envelope: JobEnvelope,
        object_id: str | None,
        record: AttemptRecord,
        *,
        attempts: int,
    ) -> None:
        """Record the job as delivered, remember it in the ledger, release its lock, and append
        its outcome to the outcome stream (one script: mark_delivered.lua).

        `object_id` None: HubSpot's answer gave none; the job shows no objectId. An error of an
        earlier attempt is cleared: the last attempt succeeded.
        """
        keys, job_id, now = self._keys, envelope.jobId, record.at
        outcome = delivered_outcome(envelope, object_id, attempt=record.attempt, at=now)
        entry = outcome_fields(outcome, envelope.callbackUrl)
        await self._delivered(
            keys=[
                keys.ledger(_identity(envelope)),
                keys.job(job_id),
                keys.job_history(job_id),
                keys.counters,
                keys.unfinished,
                keys.job_lock(job_id),
                keys.job_envelope(job_id),
                keys.activity(int(now // 60)),
                keys.outcomes,
            ],
            args=[
                object_id or _LEDGER_NO_OBJECT_ID,
                self._ledger_ttl_s,
                attempts,
                now,
                object_id or "",
                record.model_dump_json(exclude_none=True),
                self._job_ttl_s,
                job_id,
                ACTIVITY_KEEP_S,
                self._outcome_max_len,
                *itertools.chain.from_iterable(entry.items()),
            ],
        )
        await self._confirm()

    async def reschedule(
        self,
        envelope: JobEnvelope,
        *,
        due_at: float,
        attempts: int,
        verify: bool,
        record: AttemptRecord,
        last_error: str | None,
    ) -> None:
        """Park the job's next attempt (`envelope` carries it) in the retry schedule."""
        keys = self._keys
        fields: dict[str, Any] = {
            F.ATTEMPTS: attempts,
            F.VERIFY: int(verify),
            F.UPDATED_AT: record.at,
        }
        if last_error is not None:
            fields[F.LAST_ERROR] = last_error
        async with self._redis.pipeline(transaction=True) as pipe:
            _queue_retrying(pipe, keys, envelope, fields, due_at=due_at)
            self._append(pipe, envelope.jobId, record)
            if record.outcome == "retry":  # "waiting" (limiter, breaker) used no attempt
                count_outcome(pipe, keys, "retried", record.at)
            pipe.zrem(keys.unfinished, envelope.jobId)
            pipe.delete(keys.job_lock(envelope.jobId))
            await pipe.execute()
        await self._confirm()

    async def mark_dead_lettered(
        self, job_id: str, entry: DeadLetter, record: AttemptRecord
    ) -> None:
        """Move the job to the DLQ: entry stored, state updated, dedupe key freed, lock released,
        outcome appended to the outcome stream (one transaction)."""
        keys = self._keys
        dedupe = await wait(self._redis.hget(keys.job(job_id), F.DEDUPE_KEY))
        async with self._redis.pipeline(transaction=True) as pipe:
            queue_add_entry(pipe, keys, entry)
            pipe.hset(
                keys.job(job_id),
                mapping={
                    F.STATE: "dead_lettered",
                    F.DEAD_LETTER_ID: entry.id,
                    F.ATTEMPTS: sum(1 for a in entry.attempts if a.httpStatus is not None),
                    F.LAST_ERROR: record.detail,
                    F.UPDATED_AT: record.at,
                    F.VERIFY: 0,
                },
            )
            pipe.hdel(keys.job(job_id), F.NEXT_ATTEMPT_AT)
            # a raw message refused before its job was claimed has no number yet: a replay is next
            pipe.hsetnx(keys.job(job_id), F.ATTEMPT, str(record.attempt))
            self._append(pipe, job_id, record)
            if dedupe:
                pipe.delete(as_text(dedupe))
            pipe.hincrby(keys.counters, f"dead_lettered:{entry.reason}", 1)
            queue_outcome(
                pipe,
                keys,
                dead_lettered_outcome(entry, attempt=record.attempt),
                callback_url=entry.callbackUrl,
                max_len=self._outcome_max_len,
            )
            count_outcome(pipe, keys, "dead_lettered", record.at)
            pipe.zrem(keys.unfinished, job_id)
            # the DLQ entry holds the event now (a replay reopens the job with a new envelope)
            pipe.delete(keys.job_lock(job_id), keys.job_envelope(job_id))
            await pipe.execute()
        await self._confirm()

    async def _confirm(self) -> None:
        """With durable writes on, wait until replicas hold the outcome just recorded."""
        if self._durability is not None:
            await self._durability.confirm_async(self._redis)

    async def schedule_only(self, job_id: str, due_at: float) -> None:
        """Look at the job again at `due_at`, state untouched (another worker holds it)."""
        await self._redis.zadd(self._keys.schedule, {job_id: due_at})

    async def release(self, job_id: str) -> None:
        """Release this worker's lock on the job without changing its state."""
        await self._redis.delete(self._keys.job_lock(job_id))

    async def history(self, job_id: str) -> list[AttemptRecord]:
        """Return the job's attempt records, oldest first."""
        rows = await wait(self._redis.lrange(self._keys.job_history(job_id), 0, -1))
        return _parse_history(rows)

    async def stored_envelopes(self, job_ids: Sequence[str]) -> list[JobEnvelope | None]:
        """Return the jobs' stored envelopes, in order (None for a job whose record is gone)."""
        if not job_ids:
            return []
        raws = await self._redis.mget([self._keys.job_envelope(job_id) for job_id in job_ids])
        return [None if raw is None else JobEnvelope.model_validate_json(raw) for raw in raws]

    async def get(self, job_id: str) -> JobStatus | None:
        """Return the job's status with its history, or None for an unknown or malformed job id."""
        if not is_valid_id(job_id):
            return None  # no key is built from it
        async with self._redis.pipeline(transaction=False) as pipe:
            _queue_status(pipe, self._keys, job_id)
            return _parse_status(job_id, await pipe.execute())

    def _append(self, pipe: Any, job_id: str, record: AttemptRecord) -> None:
        pipe.rpush(self._keys.job_history(job_id), record.model_dump_json(exclude_none=True))
