"""One attempt of one job, start to finish, as a plain `async` function (no Celery here).

claim the attempt → ledger → breaker → limiter → POST (first attempt) or, after an ambiguous
attempt and on replay, [GET if the token can read] → PUT → decide → record.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from eventq.errors import EventqError
from eventq.jobs import Begun, JobStore
from eventq.records import AttemptRecord, DeadLetter, DeadLetterReason, HubSpotErrorInfo
from eventq.schema import JobEnvelope
from worker.attempts import AttemptResult, Found, HttpFailure, NetworkFailure, NotFound
from worker.circuit_breaker import CircuitBreaker
from worker.credentials import (
    AccessToken,
    Credentials,
    CredentialsError,
    CredentialsUnavailable,
    can_read_events,
    describe_auth_failure,
    is_expired_token,
)
from worker.hubspot_client import HubSpotClient
from worker.metrics import ATTEMPT_LATENCY, DELIVERIES, RATE_LIMITED
from worker.rate_limit import RateLimiter
from worker.retry_policy import (
    Backoff,
    Decision,
    Delivered,
    PauseBucket,
    RetryLater,
    Wait,
    decide,
)

__all__ = ["Delivery", "Outcome", "decode_envelope"]

log = logging.getLogger("eventq.delivery")
attempt_log = logging.getLogger("eventq.attempt")

OutcomeKind = Literal["delivered", "retrying", "dead_lettered", "skipped"]
_Send = Callable[[Mapping[str, Any], str], Awaitable[AttemptResult]]


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
        raise _Invalid(payload, str(body.get("jobId")), _field_errors(error)) from None


def _field_errors(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        path = ".".join(str(p) for p in item["loc"] if p != "event") or "body"
        parts.append(f"{path}: {item['msg']}")
    return "; ".join(parts)


@dataclass
class Delivery:
    """Everything one attempt needs; one instance per worker process."""

    jobs: JobStore
    client: HubSpotClient
    limiter: RateLimiter
    breaker: CircuitBreaker
    credentials: Credentials
    policy: Backoff
    max_limiter_wait_s: float
    lock_ttl_ms: int

    async def run(self, raw: object, task_id: str) -> Outcome:
        """Run one attempt of the job in `raw` (the message's first argument)."""
        try:
            envelope = decode_envelope(raw, task_id)
        except _Invalid as invalid:
            return await self._dead_letter_invalid(invalid)
        begun = await self.jobs.begin(
            envelope,
            raw_envelope=envelope.model_dump_json(),
            lock_ttl_ms=self.lock_ttl_ms,
            now=time.time(),
        )
        if begun.status in ("done", "stale"):
            return Outcome("skipped", envelope.jobId, f"job is {begun.status}")
        if begun.status == "locked":
            return await self._wait_for_lock(envelope)
        try:
            attempt = _Attempt(self, envelope, begun.attempts, begun.verify)
            return await attempt.run(begun)
        except BaseException:
            await self.jobs.release(envelope.jobId)  # the message will be redelivered
            raise

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
    """The state of one attempt while it runs."""

    def __init__(self, d: Delivery, envelope: JobEnvelope, attempts: int, verify: bool) -> None:
        self.d, self.envelope, self.attempts, self.verify = d, envelope, attempts, verify
        self.event = envelope.event
        self.breaker_clean = False
        self.sent_at: float | None = None  # the last grant's send time, for the share estimate

    async def run(self, begun: Begun) -> Outcome:
        """Run the attempt; `begun` carries the ledger's answer when the event was delivered."""
        if begun.in_ledger:
            how = "already in the delivered ledger"
            return await self._delivered(begun.delivered_object_id, None, how)
        try:
            token = await self.d.credentials.token_for(self.envelope.portalId)
        except CredentialsUnavailable as error:  # token endpoint down: wait, use no attempt
            return await self._park(time.time() + error.retry_after_s, str(error))
        except CredentialsError as error:
            return await self._dead_letter("auth", str(error), None)
        gate = await self._gate(token)
        if gate is not None:
            return gate
        if self.verify:
            return await self._resend(token)
        return await self._finish(await self._send(token, self.d.client.create), token)

    async def _finish(self, result: AttemptResult, token: AccessToken) -> Outcome:
        return await self._retry_if_expired(result, token) or await self._act(result, token)

    async def _retry_if_expired(self, result: AttemptResult, token: AccessToken) -> Outcome | None:
        """Park the job for an immediate retry (no attempt used) after an expired-token 401."""
        expired = isinstance(result, HttpFailure) and is_expired_token(result)
        if expired and await self.d.credentials.refresh_after_401(token):
            return await self._park(time.time(), "token refreshed, retrying at once")
        return None

    async def _resend(self, token: AccessToken) -> Outcome:
        """After an ambiguous attempt or on replay: re-send with PUT, which cannot duplicate.

        Only a token known to have the read scope looks first (GET): found is delivered, not
        found is POSTed; a refused or failed look falls back to the PUT, never to a dead letter.
        """
        if can_read_events(token):
            looked = await self._look(token)
            if looked is not None:
                return looked
            gate = await self._gate(token)  # the GET took a slot; the next request needs its own
            if gate is not None:
                return gate
        send = self.d.client.upsert if self.verify else self.d.client.create
        return await self._finish(await self._send(token, send), token)

    async def _look(self, token: AccessToken) -> Outcome | None:
        """GET the event; return an outcome when found or paused, None to go on and send."""
        secret = token.value.get_secret_value()
        found = await self.d.client.find(
            self.event.externalAccountId, self.event.externalEventId, secret
        )
        await self._observe(found, token)
        if isinstance(found, NotFound):
            self.verify = False  # HubSpot has no such event: a POST cannot duplicate it
            return None
        if isinstance(found, Found) or (isinstance(found, HttpFailure) and found.status == 429):
            return await self._act(found, token)
        refreshed = await self._retry_if_expired(found, token)
        if refreshed is not None:
            return refreshed
        log.info("existence check not usable (%s): re-sending with PUT", _describe(found))
        return None

    async def _gate(self, token: AccessToken) -> Outcome | None:
        """Return a parked outcome when the breaker or limiter says not now, else None."""
        verdict = await self.d.breaker.allow(self.d.client.base_url)
        self.breaker_clean = verdict.clean
        if not verdict.allowed:
            return await self._park(verdict.retry_at, f"circuit breaker {verdict.state}")
        for _ in range(_SLOT_TRIES):
            grant = await self.d.limiter.acquire(token.bucket, self.d.max_limiter_wait_s)
            if not grant.granted:
                return await self._park(grant.retry_at, f"rate limit: {grant.reason}")
            granted_at = time.monotonic()
            if grant.wait_s > 0:
                await asyncio.sleep(grant.wait_s)
            elapsed_s = time.monotonic() - granted_at
            if not self.d.limiter.is_late(grant, elapsed_s):
                self.sent_at = grant.send_at
                return None
            # woke past its slot: sending now could overrun HubSpot's window; take a new one
            late_s = elapsed_s - grant.wait_s
            log.debug("woke %.3f s past its rate-limit slot: taking a new one", late_s)
            await self.d.limiter.release(token.bucket, grant)
        return await self._park(time.time(), "rate limit: woke past its slot")

    async def _send(self, token: AccessToken, send: _Send) -> AttemptResult:
        result = await send(self.event.to_hubspot(), token.value.get_secret_value())
        await self._observe(result, token)
        return result

    async def _observe(self, result: AttemptResult, token: AccessToken) -> None:
        if result.headers and not (isinstance(result, HttpFailure) and result.status == 429):
            # a 429's: after_429
            await self.d.limiter.observe(token.bucket, result.headers, self.sent_at)
        # timeouts, refused or dropped connections and 5xx all mean HubSpot is struggling
        failed = isinstance(result, NetworkFailure)
        failed = failed or (isinstance(result, HttpFailure) and result.status >= 500)
        if failed:
            await self.d.breaker.record_failure(self.d.client.base_url)
        elif not self.breaker_clean:  # a success only matters when there is something to reset
            await self.d.breaker.record_success(self.d.client.base_url)

    async def _act(self, result: AttemptResult, token: AccessToken) -> Outcome:
        self.attempts += 1
        now = time.time()
        age_s = now - self.envelope.firstEnqueuedAt.timestamp()
        decision = decide(
            result, attempts_used=self.attempts, age_s=age_s, now_s=now, policy=self.d.policy
        )
        return await self._apply(decision, result, token)

    async def _apply(
        self, decision: Decision, result: AttemptResult, token: AccessToken
    ) -> Outcome:
        if isinstance(decision, Delivered):
            how = "delivered"
            if decision.warning:
                how = f"delivered, warning: {decision.warning}"
                log.warning("job %s %s", self.envelope.jobId, how)
            return await self._delivered(decision.object_id, result, how)
        if isinstance(decision, Wait):
            self.attempts -= 1  # HubSpot's state (423, 477), not the job's fault
            return await self._park(decision.until_s, decision.reason, result)
        if isinstance(decision, PauseBucket):
            self.attempts -= 1  # a 429 is HubSpot's pacing, not the job's fault
            RATE_LIMITED.labels(decision.policy).inc()
            pause = await self.d.limiter.after_429(
                token.bucket, decision.policy, result.headers, decision.retry_after_s
            )
            log.warning("rate limited (%s): bucket paused %s", decision.policy, pause.why)
            jitter_s = random.uniform(0, 0.25)  # noqa: S311 - spreads wake-ups, not crypto
            return await self._park(pause.until_s + jitter_s, f"429 {decision.policy}", result)
        if isinstance(decision, RetryLater):
            self.verify = self.verify or decision.verify  # once ambiguous, re-send with PUT
            return await self._park(time.time() + decision.delay_s, decision.reason, result)
        if decision.reason == "auth" and isinstance(result, HttpFailure):
            message = describe_auth_failure(result, self.envelope.portalId)
            detail = f"HTTP {result.status}: {message}"
            return await self._dead_letter("auth", detail, result, message=message)
        return await self._dead_letter(decision.reason, decision.detail, result)

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
        )
        _log_attempt(self.envelope, record)
        return record

    async def _delivered(
        self, object_id: str | None, result: AttemptResult | None, how: str
    ) -> Outcome:
        record = self._record("delivered", how, result)
        await self.d.jobs.mark_delivered(self.envelope, object_id, record, attempts=self.attempts)
        return Outcome("delivered", self.envelope.jobId, how, object_id=object_id)

    async def _park(self, due: float, why: str, result: AttemptResult | None = None) -> Outcome:
        outcome = "retry" if result is not None else "waiting"
        record = self._record(outcome, why, result)
        await self.d.jobs.reschedule(
            self.envelope.next_attempt(),
            due_at=due,
            attempts=self.attempts,
            verify=self.verify,
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
            firstEnqueuedAt=self.envelope.firstEnqueuedAt.timestamp(),
            deadLetteredAt=time.time(),
        )
        await self.d.jobs.mark_dead_lettered(self.envelope.jobId, entry, record)
        log.warning("job %s dead-lettered as %s: %s", self.envelope.jobId, reason, detail)
        return Outcome("dead_lettered", self.envelope.jobId, f"{reason}: {detail}")


def _describe(result: AttemptResult) -> str:
    """Return a short, secret-free description of a result for a log line."""
    if isinstance(result, HttpFailure):
        return f"HTTP {result.status}"
    if isinstance(result, NetworkFailure):
        return f"{result.kind}: {result.detail}"
    return type(result).__name__
