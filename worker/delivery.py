"""One attempt of one job, start to finish, as a plain `async` function (no Celery here).

claim the attempt, then gather → decide → apply: gather what happens (the ledger, the token,
the breaker's and the limiter's answers, POST first or, after an ambiguous attempt and on replay,
[GET if the token can read] then PUT) into one `retry_policy.Gathered`; the pure
`retry_policy.decide` returns one `Decision`; `_Attempt._apply` records it (job store, the
limiter's one pause per 429, metrics, the attempt's log line). A `Send` decision goes on within
the attempt; a `RefreshAndRetry` is followed (refresh, else its `otherwise`) before applying.
Collaborators are the small Protocols of their modules, so tests can pass in-memory ones.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

import redis
from pydantic import ValidationError

from eventq.errors import EventqError
from eventq.jobs import Begun
from eventq.keys import is_valid_id
from eventq.records import AttemptRecord, DeadLetter, DeadLetterReason, HubSpotErrorInfo
from eventq.schema import JobEnvelope, new_job_id
from eventq.tracing import attempt_span, record_attempt
from worker.attempts import AttemptResult, HttpFailure, NetworkFailure
from worker.batcher import Batcher, BatchReply
from worker.circuit_breaker import Breaker, is_struggling
from worker.credentials import (
    AccessToken,
    Credentials,
    CredentialsError,
    CredentialsUnavailable,
    can_read_events,
)
from worker.hubspot_client import EventsApi
from worker.metrics import ATTEMPT_LATENCY, DELIVERIES, RATE_LIMITED
from worker.rate_limit import Grant, Limiter, Pause
from worker.retry_policy import (
    Backoff,
    DeadLetterNow,
    Decision,
    Delivered,
    Gathered,
    NoToken,
    PauseBucket,
    RefreshAndRetry,
    Refusal,
    Request,
    RetryLater,
    Send,
    Wait,
    decide,
)

__all__ = ["AttemptStore", "Delivery", "Outcome", "PackOutcome", "decode_envelope"]

log = logging.getLogger("eventq.delivery")
attempt_log = logging.getLogger("eventq.attempt")
RELEASE_RETRY_S = 0.25  # how often a lock left by an attempt cut off from Redis is retried
_RELEASING: set[asyncio.Task[None]] = set()  # the loop holds tasks weakly

OutcomeKind = Literal["delivered", "retrying", "dead_lettered", "skipped"]
_Send = Callable[[Mapping[str, Any], str], Awaitable[AttemptResult]]


@dataclass(frozen=True)
class PackOutcome:
    """What the pack task reports: how its events ended, one outcome per event."""

    outcomes: tuple[Outcome, ...]

    def counts(self) -> dict[str, int]:
        """Return the number of events per outcome kind (`delivered`, `retrying`, …)."""
        return dict(Counter(outcome.kind for outcome in self.outcomes))


@dataclass(frozen=True)
class Outcome:
    """What the Celery task reports: ack, show RETRY, or show FAILURE (dead-lettered)."""

    kind: OutcomeKind
    job_id: str
    detail: str = ""
    object_id: str | None = None
    next_attempt_at: float | None = None


class _Invalid(EventqError):
    """A job whose payload cannot be sent: it is dead-lettered as invalid, never POSTed."""

    def __init__(self, payload: dict[str, Any], job_id: str, detail: str) -> None:
        super().__init__(detail)
        self.payload, self.job_id, self.detail = payload, job_id, detail


def decode_envelope(raw: object, task_id: str) -> JobEnvelope:
    """Return the job envelope carried by a message; a bare event is wrapped as a raw job.

    Raises _Invalid (dead-letter as `invalid`) naming every bad field.
    """
    if not isinstance(raw, dict):
        raise _Invalid({"value": repr(raw)[:1000]}, task_id, "message body is not a JSON object")
    body: dict[str, Any] = raw if "event" in raw else {"jobId": task_id, "event": raw}
    body.setdefault("jobId", task_id)
    try:
        return JobEnvelope.model_validate(body)
    except ValidationError as error:
        event = body.get("event")
        payload = event if isinstance(event, dict) else {"event": event}
        raise _Invalid(
            payload, _record_id(body.get("jobId"), task_id), _field_errors(error)
        ) from None


def _record_id(job_id: object, task_id: str) -> str:
    """Return the id to dead-letter an invalid message under: its own if well-formed (it names a
    key), else the task id, else a new one."""
    for candidate in (job_id, task_id):
        if isinstance(candidate, str) and is_valid_id(candidate):
            return candidate
    return new_job_id()


def _is_reference(item: object) -> bool:
    """True for a pack item naming a recorded job: `[jobId, attempt]`."""
    return (
        isinstance(item, list)
        and len(item) == 2
        and isinstance(item[0], str)
        and isinstance(item[1], int)
        and not isinstance(item[1], bool)
    )


async def _skipped(job_id: str, why: str) -> Outcome:
    return Outcome("skipped", job_id, why)


def _field_errors(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        path = ".".join(str(p) for p in item["loc"] if p != "event") or "body"
        parts.append(f"{path}: {item['msg']}")
    return "; ".join(parts)


class AttemptStore(Protocol):
    """What an attempt asks of the job store (eventq.jobs.JobStore; an in-memory one in tests).

    Declared here, by its one user, so the job-record module keeps its own shape.
    """

    async def begin(
        self, envelope: JobEnvelope, *, raw_envelope: str, lock_ttl_ms: int, now: float
    ) -> Begun:
        """Claim the attempt: done, stale, locked, or run (with attempts, verify, ledger)."""
        ...

    async def mark_delivered(
        self, envelope: JobEnvelope, object_id: str | None, record: AttemptRecord, *, attempts: int
    ) -> None:
        """Record the job delivered."""
        ...

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
        """Park the job until `due_at`."""
        ...

    async def mark_dead_lettered(
        self, job_id: str, entry: DeadLetter, record: AttemptRecord
    ) -> None:
        """Write the DLQ entry and end the job."""
        ...

    async def schedule_only(self, job_id: str, due_at: float) -> None:
        """Look at the job again at `due_at` without touching its record."""
        ...

    async def release(self, job_id: str) -> None:
        """Drop the attempt's lock (the message will be redelivered)."""
        ...

    async def history(self, job_id: str) -> list[AttemptRecord]:
        """Return the job's attempt records."""
        ...

    async def stored_envelopes(self, job_ids: Sequence[str]) -> list[JobEnvelope | None]:
        """Return the jobs' stored envelopes, in order (None for a job whose record is gone)."""
        ...


@dataclass
class Delivery:
    """Everything one attempt needs; one instance per worker process."""

    jobs: AttemptStore
    client: EventsApi
    limiter: Limiter
    breaker: Breaker
    credentials: Credentials
    policy: Backoff
    max_limiter_wait_s: float
    lock_ttl_ms: int
    batcher: Batcher | None = None  # bulk upsert on (EVENTQ_BULK_MODE=upsert)
    # a pack's jobs in flight, by lane: joining a batch upsert (True) or sent alone (False)
    _pack_slots: dict[bool, asyncio.Semaphore] | None = None

    async def run(self, raw: object, task_id: str) -> Outcome:
        """Run one attempt of the job in `raw` (the message's first argument)."""
        try:
            envelope = decode_envelope(raw, task_id)
        except _Invalid as invalid:
            return await self._dead_letter_invalid(invalid)
        return await self._attempt(envelope)

    async def run_pack(
        self, raw: object, task_id: str, *, concurrency: int, alone: int | None = None
    ) -> PackOutcome:
        """Run one attempt of each job of a pack (`eventq.create_marketing_events`), together.

        An item is a recorded job as `[jobId, attempt]` (its envelope is read from the record)
        or a job envelope as a single message carries it. Each job has its own attempt and
        outcome: a retry waits in the retry schedule as that job alone, an invalid item is
        dead-lettered alone. At most `concurrency` jobs of all packs run at once, and of them at
        most `alone` (EVENTQ_CONCURRENCY) that are sent alone, each holding a connection and
        perhaps waiting for a limiter slot, as the pool's lanes bound single messages (the pool
        counts a pack as one message, so its jobs are bounded here; the first call sets both).
        Raises the first error an attempt raised (e.g. Redis out of reach) once every attempt
        has finished: the pack is then redelivered, and the jobs that ended meanwhile are
        skipped.
        """
        if self._pack_slots is None:  # made on the loop that runs the attempts
            alone_slots = concurrency if alone is None else min(alone, concurrency)
            self._pack_slots = {
                True: asyncio.Semaphore(concurrency),
                False: asyncio.Semaphore(alone_slots),
            }
        items = raw if isinstance(raw, list) else [raw]
        runs = await self._unpack(items, task_id)
        results = await asyncio.gather(*runs, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return PackOutcome(tuple(r for r in results if isinstance(r, Outcome)))

    async def _unpack(self, items: list[Any], task_id: str) -> list[Coroutine[Any, Any, Outcome]]:
        """Return one coroutine per item of a pack: its attempt, or its refusal."""
        refs = {i: item for i, item in enumerate(items) if _is_reference(item)}
        stored = await self.jobs.stored_envelopes([job_id for job_id, _ in refs.values()])
        found = dict(zip(refs, stored, strict=True))
        runs: list[Coroutine[Any, Any, Outcome]] = []
        for index, item in enumerate(items):
            if index not in refs:
                bulk = isinstance(item, dict) and item.get("priority") == "bulk"
                runs.append(self._in_pack_slot(self.run(item, f"{task_id}-{index}"), bulk))
                continue
            job_id, attempt = item
            envelope = found[index]
            if envelope is None:
                runs.append(_skipped(job_id, "job is finished or gone"))
            elif envelope.attempt != attempt:
                runs.append(_skipped(job_id, "job is stale"))
            else:  # recorded: begin has no raw message to adopt
                run = self._attempt(envelope, raw_envelope="")
                runs.append(self._in_pack_slot(run, envelope.priority == "bulk"))
        return runs

    async def _in_pack_slot(self, run: Coroutine[Any, Any, Outcome], bulk: bool) -> Outcome:
        """Run one job of a pack once a slot of its lane is free (see `run_pack`)."""
        if self._pack_slots is None:
            raise RuntimeError("run_pack sets the slots first")
        batched = self.batcher is not None and (bulk or self.batcher.live)
        async with self._pack_slots[batched]:
            return await run

    async def _attempt(self, envelope: JobEnvelope, *, raw_envelope: str | None = None) -> Outcome:
        begun = await self.jobs.begin(
            envelope,
            raw_envelope=envelope.to_json() if raw_envelope is None else raw_envelope,
            lock_ttl_ms=self.lock_ttl_ms,
            now=time.time(),
        )
        if begun.status in ("done", "stale"):
            return Outcome("skipped", envelope.jobId, f"job is {begun.status}")
        if begun.status == "locked":
            return await self._wait_for_lock(envelope)
        try:
            with attempt_span(envelope):
                return await _Attempt(self, envelope, begun).run()
        except BaseException:
            await self._release(envelope.jobId)  # the message will be redelivered
            raise

    async def _release(self, job_id: str) -> None:
        try:
            await self.jobs.release(job_id)
        except (redis.ConnectionError, redis.TimeoutError):
            # Redis went away (the pool cancels attempts when the broker connection drops):
            # free the lock as soon as Redis is back, or the redelivered message would wait out
            # the whole lock TTL. The attempt runs no more, and its job's `in_progress` state
            # makes the next attempt verify before it sends (no duplicate).
            task = asyncio.get_running_loop().create_task(self._release_when_back(job_id))
            _RELEASING.add(task)
            task.add_done_callback(_RELEASING.discard)

    async def _release_when_back(self, job_id: str) -> None:
        deadline = time.monotonic() + self.lock_ttl_ms / 1000  # by then the lock has expired
        while time.monotonic() < deadline:
            await asyncio.sleep(RELEASE_RETRY_S)
            try:
                await self.jobs.release(job_id)
            except (redis.ConnectionError, redis.TimeoutError):
                continue
            return

    async def _wait_for_lock(self, envelope: JobEnvelope) -> Outcome:
        # another worker runs this attempt; look again after its lock must have expired
        due = time.time() + self.lock_ttl_ms / 1000
        await self.jobs.schedule_only(envelope.jobId, due)
        return Outcome("skipped", envelope.jobId, "attempt already running elsewhere")

    async def _dead_letter_invalid(self, invalid: _Invalid) -> Outcome:
        now = time.time()
        record = AttemptRecord(attempt=1, at=now, outcome="dead_letter", detail=invalid.detail)
        entry = DeadLetter(
            id=uuid.uuid4().hex,
            jobId=invalid.job_id,
            payload=invalid.payload,
            reason="invalid",
            error=HubSpotErrorInfo(message=invalid.detail),
            attempts=[record],
            firstEnqueuedAt=now,
            deadLetteredAt=now,
        )
        await self.jobs.mark_dead_lettered(invalid.job_id, entry, record)
        log.warning("job %s dead-lettered as invalid: %s", invalid.job_id, invalid.detail)
        return Outcome("dead_lettered", invalid.job_id, f"invalid: {invalid.detail}")


def _log_attempt(envelope: JobEnvelope, record: AttemptRecord) -> None:
    """Emit the one structured line per attempt, and count it."""
    DELIVERIES.labels(record.outcome).inc()
    record_attempt(record.outcome, record.httpStatus, record.correlationId)
    if record.latencyMs is not None:
        ATTEMPT_LATENCY.observe(record.latencyMs / 1000)
    attempt_log.info(
        "attempt %s",
        record.outcome,
        extra={
            "jobId": envelope.jobId,
            "externalEventId": envelope.event.externalEventId,
            "attempt": record.attempt,
            "outcome": record.outcome,
            "httpStatus": record.httpStatus,
            "latencyMs": record.latencyMs,
            "correlationId": record.correlationId,
            "detail": record.detail,
        },
    )


# A request that wakes past its rate-limit slot takes a new one, this many times in all.
_SLOT_TRIES = 3


class _Attempt:
    """One attempt: gather what happens into a `Gathered`, `decide`, then `apply` the decision."""

    def __init__(self, d: Delivery, envelope: JobEnvelope, begun: Begun) -> None:
        self.d, self.envelope, self.event = d, envelope, envelope.event
        self.attempts_before = begun.attempts
        self.facts = Gathered(
            verify=begun.verify,
            portal_id=envelope.portalId,
            in_ledger=begun.in_ledger,
            ledger_object_id=begun.delivered_object_id,
        )
        self.token: AccessToken | None = None
        self.batch: BatchReply | None = None  # the batch this attempt's write went in, if any
        self.alone = False  # its batch did not tell its outcome: the job is sent alone (PUT)

    async def run(self) -> Outcome:
        """Gather step by step until the decision is no `Send`; apply that decision."""
        if not self.facts.in_ledger:
            await self._gather_token()
        while True:
            decision = await self._follow(self._decide())
            if not isinstance(decision, Send):
                return await self._apply(decision)
            if decision.reason:
                log.info("%s: re-sending with %s", decision.reason, decision.request)
            await self._gather_request(decision)

    def _decide(self) -> Decision:
        now = time.time()
        return decide(
            self.facts,
            attempts_before=self.attempts_before,
            age_s=now - self.envelope.firstEnqueuedAt.timestamp(),
            now_s=now,
            policy=self.d.policy,
        )

    async def _follow(self, decision: Decision) -> Decision:
        """Refresh an expired token: retry at once (no attempt, no answer kept) or `otherwise`."""
        if not isinstance(decision, RefreshAndRetry):
            return decision
        if self.token is not None and await self.d.credentials.refresh_after_401(self.token):
            self.facts = replace(self.facts, result=None)
            return Wait(time.time(), "token refreshed, retrying at once", self.facts.verify)
        return decision.otherwise

    # -- gather ------------------------------------------------------------------------------

    async def _gather_token(self) -> None:
        try:
            self.token = await self.d.credentials.token_for(self.envelope.portalId)
        except CredentialsUnavailable as error:  # token endpoint down: wait, use no attempt
            self.facts = replace(self.facts, no_token=NoToken(str(error), error.retry_after_s))
            return
        except CredentialsError as error:
            self.facts = replace(self.facts, no_token=NoToken(str(error)))
            return
        self.facts = replace(self.facts, can_read=can_read_events(self.token))

    def _batched(self, step: Send) -> bool:
        batcher = self.d.batcher
        return (
            step.request != "GET"
            and not self.alone
            and batcher is not None
            and batcher.takes(self.envelope)
        )

    async def _gather_request(self, step: Send) -> None:
        """Ask the breaker and the limiter, then send `step.request`; record what happened.

        A bulk job's write (POST or PUT) joins its bucket's batch upsert instead.
        """
        token = self.token
        if token is None:  # decide sends nothing without a token
            raise RuntimeError("no token to send with")
        if self.d.batcher is not None and self._batched(step):
            await self._gather_batched(self.d.batcher, step, token)
            return
        self.facts = self.facts.sending(step)
        verdict = await self.d.breaker.allow(self.d.client.base_url)
        if not verdict.allowed:
            refusal = Refusal(verdict.retry_at, f"circuit breaker {verdict.state}")
            self.facts = replace(self.facts, refusal=refusal)
            return
        slot = await self._slot(token)
        if isinstance(slot, Refusal):
            self.facts = replace(self.facts, refusal=slot)
            return
        result = await self._send(step.request, token)
        await self._observe(result, token, breaker_clean=verdict.clean, sent_at=slot.send_at)
        self.facts = replace(self.facts, result=result)

    async def _slot(self, token: AccessToken) -> Grant | Refusal:
        """Wait for a rate-limit slot; a request that wakes past its slot takes a new one.

        Sending late could overrun HubSpot's window beside sends on time (RateLimiter.is_late).
        """
        for _ in range(_SLOT_TRIES):
            grant = await self.d.limiter.acquire(token.bucket, self.d.max_limiter_wait_s)
            if not grant.granted:
                return Refusal(grant.retry_at, f"rate limit: {grant.reason}")
            granted_at = time.monotonic()
            if grant.wait_s > 0:
                await asyncio.sleep(grant.wait_s)
            elapsed_s = time.monotonic() - granted_at
            if not self.d.limiter.is_late(grant, elapsed_s):
                return grant
            late_s = elapsed_s - grant.wait_s
            log.debug("woke %.3f s past its rate-limit slot: taking a new one", late_s)
            await self.d.limiter.release(token.bucket, grant)
        return Refusal(time.time(), "rate limit: woke past its slot")

    async def _gather_batched(self, batcher: Batcher, step: Send, token: AccessToken) -> None:
        """Send the write in the bucket's next batch upsert; take this job's part of its answer."""
        self.facts = self.facts.sending(step)
        reply = await batcher.submit(token, self.event.to_hubspot())
        self.batch = reply
        if reply.refusal is not None:
            self.facts = replace(self.facts, refusal=reply.refusal)
        elif reply.unknown is not None:  # never guessed: ask HubSpot about this one alone
            log.info(
                "job %s: batch %s did not tell its outcome (%s), sending it alone",
                self.envelope.jobId,
                reply.batch_id,
                reply.unknown,
            )
            self.alone = True
            await self._gather_request(Send("PUT", verify=True))
        else:
            self.facts = replace(self.facts, result=reply.result)

    async def _send(self, request: Request, token: AccessToken) -> AttemptResult:
        secret = token.value.get_secret_value()
        if request == "GET":
            event = self.event
            return await self.d.client.find(event.externalAccountId, event.externalEventId, secret)
        send = self.d.client.upsert if request == "PUT" else self.d.client.create
        return await send(self.event.to_hubspot(), secret)

    async def _observe(
        self, result: AttemptResult, token: AccessToken, *, breaker_clean: bool, sent_at: float
    ) -> None:
        """Tell the limiter HubSpot's headers and the breaker how HubSpot is doing."""
        if result.headers and not (isinstance(result, HttpFailure) and result.status == 429):
            # a 429's: after_429
            await self.d.limiter.observe(token.bucket, result.headers, sent_at)
        if is_struggling(result):
            await self.d.breaker.record_failure(self.d.client.base_url)
        elif not breaker_clean:  # a success only matters when there is something to reset
            await self.d.breaker.record_success(self.d.client.base_url)

    # -- apply -------------------------------------------------------------------------------

    async def _apply(self, decision: Decision) -> Outcome:
        """Record `decision`: job store, limiter pause, metrics and the attempt's log line."""
        result = self.facts.result
        attempts = self.attempts_before + (1 if decision.uses_attempt else 0)
        if isinstance(decision, Delivered):
            how = decision.detail
            if decision.warning:
                how = f"{how}, warning: {decision.warning}"
                log.warning("job %s %s", self.envelope.jobId, how)
            return await self._delivered(decision.object_id, result, how, attempts)
        if isinstance(decision, PauseBucket):
            return await self._pause(decision, result, attempts)
        if isinstance(decision, Wait):
            return await self._park(
                decision.until_s, decision.reason, result, attempts, decision.verify
            )
        if isinstance(decision, RetryLater):
            due = time.time() + decision.delay_s
            return await self._park(due, decision.reason, result, attempts, decision.verify)
        if isinstance(decision, DeadLetterNow):
            return await self._dead_letter(
                decision.reason, decision.detail, result, message=decision.message
            )
        raise RuntimeError(f"{type(decision).__name__} is followed, not applied")

    async def _pause(
        self, decision: PauseBucket, result: AttemptResult | None, attempts: int
    ) -> Outcome:
        """Have the limiter pause the bucket once for the 429, and park the job past the pause."""
        token = self.token
        if token is None or result is None:  # a 429 is an answer to a request sent with a token
            raise RuntimeError("a 429 without a request")
        RATE_LIMITED.labels(decision.policy).inc()

        async def after_429() -> Pause:
            pause = await self.d.limiter.after_429(
                token.bucket, decision.policy, result.headers, decision.retry_after_s
            )
            log.warning("rate limited (%s): bucket paused %s", decision.policy, pause.why)
            return pause

        # a batch's members share its one 429: the bucket pauses once for all of them
        shared = self.batch.pause if self.batch is not None and not self.alone else None
        pause = await (shared.run(after_429) if shared is not None else after_429())
        jitter_s = random.uniform(0, 0.25)  # noqa: S311 - spreads wake-ups, not crypto
        due = pause.until_s + jitter_s
        return await self._park(due, f"429 {decision.policy}", result, attempts, decision.verify)

    def _record(self, outcome: str, detail: str, result: AttemptResult | None) -> AttemptRecord:
        status = result.status if isinstance(result, HttpFailure) else None
        if result is not None and status is None and not isinstance(result, NetworkFailure):
            status = 200
        record = AttemptRecord(
            attempt=self.envelope.attempt,
            at=time.time(),
            outcome=outcome,
            httpStatus=status,
            latencyMs=None if result is None else round(result.latency_ms, 1),
            detail=detail,
            correlationId=result.correlation_id if isinstance(result, HttpFailure) else None,
            batch=None if self.batch is None else self.batch.batch_id,
            batchSize=None if self.batch is None else self.batch.size,
        )
        _log_attempt(self.envelope, record)
        return record

    async def _delivered(
        self, object_id: str | None, result: AttemptResult | None, how: str, attempts: int
    ) -> Outcome:
        record = self._record("delivered", how, result)
        await self.d.jobs.mark_delivered(self.envelope, object_id, record, attempts=attempts)
        return Outcome("delivered", self.envelope.jobId, how, object_id=object_id)

    async def _park(
        self, due: float, why: str, result: AttemptResult | None, attempts: int, verify: bool
    ) -> Outcome:
        outcome = "retry" if result is not None else "waiting"
        record = self._record(outcome, why, result)
        await self.d.jobs.reschedule(
            self.envelope.next_attempt(),
            due_at=due,
            attempts=attempts,
            verify=verify,
            record=record,
            last_error=why if result is not None else None,
        )
        return Outcome("retrying", self.envelope.jobId, why, next_attempt_at=due)

    async def _dead_letter(
        self,
        reason: DeadLetterReason,
        detail: str,
        result: AttemptResult | None,
        *,
        message: str | None = None,
    ) -> Outcome:
        record = self._record("dead_letter", detail, result)
        history = [*await self.d.jobs.history(self.envelope.jobId), record]
        error = HubSpotErrorInfo(message=detail)
        if isinstance(result, HttpFailure):
            error = HubSpotErrorInfo(
                message=message or result.message,
                category=result.category,
                correlationId=result.correlation_id,
                errors=[e for e in result.body.get("errors", []) if isinstance(e, dict)],
            )
        entry = DeadLetter(
            id=uuid.uuid4().hex,
            jobId=self.envelope.jobId,
            payload=self.event.model_dump(mode="json", exclude_none=True),
            portalId=self.envelope.portalId,
            reason=reason,
            httpStatus=result.status if isinstance(result, HttpFailure) else None,
            error=error,
            attempts=history,
            source=self.envelope.source,
            callbackUrl=self.envelope.callbackUrl,
            firstEnqueuedAt=self.envelope.firstEnqueuedAt.timestamp(),
            deadLetteredAt=time.time(),
        )
        await self.d.jobs.mark_dead_lettered(self.envelope.jobId, entry, record)
        log.warning("job %s dead-lettered as %s: %s", self.envelope.jobId, reason, detail)
        return Outcome("dead_lettered", self.envelope.jobId, f"{reason}: {detail}")
