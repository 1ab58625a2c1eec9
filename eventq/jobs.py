"""Job status in Redis: created by producers, advanced by workers, read by admins."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal, cast

import redis
import redis.asyncio as aioredis

from eventq.keys import Keys, event_identity
from eventq.records import AttemptRecord, DeadLetter, JobStatus
from eventq.schema import JobEnvelope

__all__ = [
    "BeginStatus",
    "Begun",
    "Created",
    "JobStore",
    "create_job",
    "create_jobs",
    "load_lua",
    "mark_published",
]

BeginStatus = Literal["ok", "done", "stale", "locked"]

# a duplicate of a job created this recently is not republished: its producer is publishing it
PUBLISH_GRACE_S = 30
_LEDGER_NO_OBJECT_ID = "-"  # ledger value of an event HubSpot accepted without naming its id


@cache
def load_lua(name: str, package: str = "eventq") -> str:
    """Return the text of the Lua script `<package>/lua/<name>.lua` (eventq's or worker's)."""
    return resources.files(package).joinpath(f"lua/{name}.lua").read_text(encoding="utf-8")


def _identity(envelope: JobEnvelope) -> str:
    event = envelope.event
    return event_identity(envelope.portalId, event.externalAccountId, event.externalEventId)


@dataclass(frozen=True)
class Created:
    """What `create_job` did: the job id, whether it already existed, whether to publish it."""

    job_id: str
    duplicate: bool
    needs_publish: bool


def create_jobs(
    client: redis.Redis,
    keys: Keys,
    items: Sequence[tuple[JobEnvelope, str | None]],
    *,
    dedupe_ttl_s: int,
) -> list[Created]:
    """Record each (envelope, idempotency hash) as a queued job, in one pipeline.

    Each item is atomic on its own (create_job.lua): a duplicate answers the existing job, and
    `needs_publish` is also True for a duplicate whose message was never published (its
    producer died between the two steps, or is still publishing it after a grace period).
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
                ],
                args=[
                    envelope.jobId,
                    now,
                    envelope.source,
                    envelope.summary(),
                    dedupe_ttl_s,
                    keys.job(""),
                    envelope.model_dump_json(),
                    PUBLISH_GRACE_S,
                ],
                client=pipe,
            )
        answers = pipe.execute()
    return [Created(as_text(job), bool(dup), bool(publish)) for job, dup, publish in answers]


def create_job(
    client: redis.Redis,
    keys: Keys,
    envelope: JobEnvelope,
    *,
    dedupe_ttl_s: int,
    idempotency_hash: str | None = None,
) -> Created:
    """Record one job; see `create_jobs`."""
    return create_jobs(client, keys, [(envelope, idempotency_hash)], dedupe_ttl_s=dedupe_ttl_s)[0]


def mark_published(client: Any, keys: Keys, job_ids: Iterable[str]) -> None:
    """Record that the jobs' messages reached the broker (`client` may be a pipeline)."""
    with client.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hset(keys.job(job_id), "published", 1)
        pipe.execute()


def _wait(reply: Any) -> Awaitable[Any]:
    """Type an async redis-py reply (its stubs merge the sync and async clients)."""
    return cast(Awaitable[Any], reply)


def as_text(value: Any) -> str:
    """A Redis reply as text, whether the client decodes responses or not."""
    return value.decode() if isinstance(value, bytes) else str(value)


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

    def __init__(self, client: aioredis.Redis, keys: Keys, *, ledger_ttl_s: int, job_ttl_s: int):
        self._redis = client
        self._keys = keys
        self._ledger_ttl_s = ledger_ttl_s
        self._job_ttl_s = job_ttl_s
        self._begin = client.register_script(load_lua("begin_attempt"))

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
        """Record the job as delivered, remember it in the ledger and release its lock.

        `object_id` None: HubSpot's answer gave none; the job shows no objectId.
        """
        keys, now = self._keys, record.at
        fields: dict[str, Any] = {
            "state": "delivered",
            "attempts": attempts,
            "updatedAt": now,
            "verify": 0,
        }
        if object_id is not None:
            fields["objectId"] = object_id
        ledger_value = object_id or _LEDGER_NO_OBJECT_ID
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.ledger(_identity(envelope)), ledger_value, ex=self._ledger_ttl_s)
            pipe.hdel(keys.job(envelope.jobId), "nextAttemptAt", "objectId")
            pipe.hset(keys.job(envelope.jobId), mapping=fields)
            self._append(pipe, envelope.jobId, record)
            pipe.expire(keys.job(envelope.jobId), self._job_ttl_s)
            pipe.expire(keys.job_history(envelope.jobId), self._job_ttl_s)
            pipe.hincrby(keys.counters, "delivered", 1)
            pipe.zrem(keys.unfinished, envelope.jobId)
            pipe.delete(keys.job_lock(envelope.jobId))
            await pipe.execute()

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
            "state": "retrying",
            "attempt": envelope.attempt,
            "attempts": attempts,
            "verify": int(verify),
            "envelope": envelope.model_dump_json(),
            "nextAttemptAt": due_at,
            "updatedAt": record.at,
        }
        if last_error is not None:
            fields["lastError"] = last_error
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.job(envelope.jobId), mapping=fields)
            self._append(pipe, envelope.jobId, record)
            pipe.zadd(keys.schedule, {envelope.jobId: due_at})
            pipe.zrem(keys.unfinished, envelope.jobId)
            pipe.delete(keys.job_lock(envelope.jobId))
            await pipe.execute()

    async def mark_dead_lettered(
        self, job_id: str, entry: DeadLetter, record: AttemptRecord
    ) -> None:
        """Move the job to the DLQ: entry stored, state updated, dedupe key freed, lock released."""
        keys = self._keys
        dedupe = await _wait(self._redis.hget(keys.job(job_id), "dedupeKey"))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.dlq_entry(entry.id), entry.model_dump_json())
            pipe.zadd(keys.dlq, {entry.id: entry.deadLetteredAt})
            pipe.hset(
                keys.job(job_id),
                mapping={
                    "state": "dead_lettered",
                    "deadLetterId": entry.id,
                    "attempts": sum(1 for a in entry.attempts if a.httpStatus is not None),
                    "lastError": record.detail,
                    "updatedAt": record.at,
                    "verify": 0,
                },
            )
            pipe.hdel(keys.job(job_id), "nextAttemptAt")
            self._append(pipe, job_id, record)
            if dedupe:
                pipe.delete(as_text(dedupe))
            pipe.hincrby(keys.counters, f"dead_lettered:{entry.reason}", 1)
            pipe.zrem(keys.unfinished, job_id)
            pipe.delete(keys.job_lock(job_id))
            await pipe.execute()

    async def schedule_only(self, job_id: str, due_at: float) -> None:
        """Look at the job again at `due_at`, state untouched (another worker holds it)."""
        await self._redis.zadd(self._keys.schedule, {job_id: due_at})

    async def release(self, job_id: str) -> None:
        """Release this worker's lock on the job without changing its state."""
        await self._redis.delete(self._keys.job_lock(job_id))

    async def history(self, job_id: str) -> list[AttemptRecord]:
        """Return the job's attempt records, oldest first."""
        rows = await _wait(self._redis.lrange(self._keys.job_history(job_id), 0, -1))
        return [AttemptRecord.model_validate_json(row) for row in rows]

    async def get(self, job_id: str) -> JobStatus | None:
        """Return the job's status with its history, or None for an unknown job id."""
        raw = await _wait(self._redis.hgetall(self._keys.job(job_id)))
        if not raw:
            return None
        fields = {as_text(k): as_text(v) for k, v in raw.items()}
        return JobStatus(
            jobId=fields.get("jobId", job_id),
            state=fields["state"],
            attempts=int(fields.get("attempts", 0)),
            source=fields.get("source", "raw"),
            summary=fields.get("summary", ""),
            objectId=fields.get("objectId"),
            lastError=fields.get("lastError"),
            deadLetterId=fields.get("deadLetterId"),
            nextAttemptAt=float(fields["nextAttemptAt"]) if "nextAttemptAt" in fields else None,
            createdAt=float(fields.get("createdAt", 0)),
            updatedAt=float(fields.get("updatedAt", 0)),
            history=await self.history(job_id),
        )

    async def envelope_json(self, job_id: str) -> str | None:
        """Return the stored envelope JSON of a job (what the next attempt will carry)."""
        value = await _wait(self._redis.hget(self._keys.job(job_id), "envelope"))
        return None if value is None else as_text(value)

    def _append(self, pipe: Any, job_id: str, record: AttemptRecord) -> None:
        pipe.rpush(self._keys.job_history(job_id), record.model_dump_json(exclude_none=True))
