"""One attempt through worker.delivery with in-memory collaborators: each decision path, applied.

No Redis, no Celery, no network: the job store, HubSpot, the limiter, the breaker and the
credentials are small in-memory objects implementing the Protocols delivery asks for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import SecretStr

from eventq.jobs import Begun
from eventq.records import AttemptRecord, DeadLetter
from eventq.schema import JobEnvelope, MarketingEvent
from tests.conftest import valid_event
from worker.attempts import AttemptResult, Created, Found, HttpFailure, NetworkFailure, NotFound
from worker.circuit_breaker import BreakerDecision
from worker.credentials import (
    READ_SCOPE,
    WRITE_SCOPE,
    AccessToken,
    CredentialsError,
    CredentialsUnavailable,
)
from worker.delivery import Delivery, Outcome
from worker.rate_limit import Grant, Pause
from worker.retry_policy import Backoff

BASE_URL = "http://hubspot.test"
EXPIRED = HttpFailure(401, {"category": "EXPIRED_AUTHENTICATION", "message": "expired"})


@dataclass
class Store:
    """The job store, in memory: hands out one `Begun` and records what the attempt wrote."""

    begun: Begun = field(default_factory=lambda: Begun("ok", verify=False, attempts=0))
    delivered: list[tuple[str | None, int, AttemptRecord]] = field(default_factory=list)
    parked: list[dict[str, Any]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    looked_again: list[float] = field(default_factory=list)

    async def begin(
        self, envelope: JobEnvelope, *, raw_envelope: str, lock_ttl_ms: int, now: float
    ) -> Begun:
        return self.begun

    async def mark_delivered(
        self, envelope: JobEnvelope, object_id: str | None, record: AttemptRecord, *, attempts: int
    ) -> None:
        self.delivered.append((object_id, attempts, record))

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
        self.parked.append(
            {"due_at": due_at, "attempts": attempts, "verify": verify, "record": record}
        )

    async def mark_dead_lettered(
        self, job_id: str, entry: DeadLetter, record: AttemptRecord
    ) -> None:
        self.dead.append(entry)

    async def schedule_only(self, job_id: str, due_at: float) -> None:
        self.looked_again.append(due_at)

    async def release(self, job_id: str) -> None:
        self.released.append(job_id)

    async def history(self, job_id: str) -> list[AttemptRecord]:
        return []

    async def stored_envelopes(self, job_ids: Sequence[str]) -> list[JobEnvelope | None]:
        return [None for _ in job_ids]


@dataclass
class HubSpot:
    """HubSpot, in memory: answers each request with the next scripted result of its method."""

    answers: dict[str, list[AttemptResult]] = field(default_factory=dict)
    sent: list[str] = field(default_factory=list)
    fail_with: BaseException | None = None

    @property
    def base_url(self) -> str:
        return BASE_URL

    def _answer(self, method: str) -> AttemptResult:
        self.sent.append(method)
        if self.fail_with is not None:
            raise self.fail_with
        return self.answers[method].pop(0)

    async def create(self, body: Mapping[str, Any], token: str) -> AttemptResult:
        return self._answer("POST")

    async def upsert(self, body: Mapping[str, Any], token: str) -> AttemptResult:
        return self._answer("PUT")

    async def find(
        self, external_account_id: str, external_event_id: str, token: str
    ) -> AttemptResult:
        return self._answer("GET")


@dataclass
class Limiter:
    """The limiter, in memory: grants (or refuses) and records observations and 429 pauses."""

    refuse_until: float | None = None
    acquired: int = 0
    observed: list[Mapping[str, str]] = field(default_factory=list)
    paused: list[tuple[str, str, float | None]] = field(default_factory=list)
    late: int = 0  # this many grants are woken past their slot
    released: list[Grant] = field(default_factory=list)
    sent_at: list[float | None] = field(default_factory=list)

    async def acquire(self, bucket: str, max_wait_s: float) -> Grant:
        self.acquired += 1
        now = time.time()
        if self.refuse_until is not None:
            return Grant(False, self.refuse_until, self.refuse_until, "paused:DAILY", now)
        return Grant(True, now, now, "ok", now)

    async def observe(
        self, bucket: str, headers: Mapping[str, str], sent_at: float | None = None
    ) -> None:
        self.observed.append(headers)
        self.sent_at.append(sent_at)

    def is_late(self, grant: Grant, elapsed_s: float) -> bool:
        self.late -= 1
        return self.late >= 0

    async def release(self, bucket: str, grant: Grant) -> None:
        self.released.append(grant)

    async def after_429(
        self, bucket: str, policy: str, headers: Mapping[str, str], retry_after_s: float | None
    ) -> Pause:
        self.paused.append((bucket, policy, retry_after_s))
        return Pause(time.time() + 10.0, "for 10.0s (test)")


@dataclass
class Breaker:
    """The breaker, in memory: a fixed verdict, and counts of what was recorded."""

    verdict: BreakerDecision = field(
        default_factory=lambda: BreakerDecision(True, "closed", 0.0, probe=False)
    )
    failures: int = 0
    successes: int = 0

    async def allow(self, target: str) -> BreakerDecision:
        return self.verdict

    async def record_success(self, target: str) -> None:
        self.successes += 1

    async def record_failure(self, target: str) -> None:
        self.failures += 1


@dataclass
class Tokens:
    """Credentials, in memory: one token (or an error), and whether a refresh helps."""

    token: AccessToken = field(
        default_factory=lambda: AccessToken(SecretStr("pat-secret"), "app:test", None, None)
    )
    error: CredentialsError | None = None
    refreshes: bool = True
    refreshed: int = 0

    async def token_for(self, portal_id: str | None) -> AccessToken:
        if self.error is not None:
            raise self.error
        return self.token

    async def refresh_after_401(self, token: AccessToken) -> bool:
        self.refreshed += 1
        return self.refreshes


READABLE = AccessToken(
    SecretStr("pat-secret"), "app:test", None, frozenset({WRITE_SCOPE, READ_SCOPE})
)


@dataclass
class World:
    store: Store = field(default_factory=Store)
    hubspot: HubSpot = field(default_factory=HubSpot)
    limiter: Limiter = field(default_factory=Limiter)
    breaker: Breaker = field(default_factory=Breaker)
    tokens: Tokens = field(default_factory=Tokens)

    async def attempt(self, raw: object | None = None) -> Outcome:
        delivery = Delivery(
            jobs=self.store,
            client=self.hubspot,
            limiter=self.limiter,
            breaker=self.breaker,
            credentials=self.tokens,
            policy=Backoff(base_s=2.0, cap_s=60.0, jitter=0.2, max_attempts=5),
            max_limiter_wait_s=1.0,
            lock_ttl_ms=30_000,
        )
        if raw is None:
            envelope = JobEnvelope(event=MarketingEvent.model_validate(valid_event(1)))
            raw = envelope.model_dump(mode="json")
        return await delivery.run(raw, "task-1")


@pytest.fixture
def world() -> World:
    return World()


def answers(**by_method: list[AttemptResult]) -> dict[str, list[AttemptResult]]:
    return dict(by_method)


async def test_a_first_attempt_posts_and_marks_the_job_delivered_with_one_attempt(
    world: World,
) -> None:
    # Given HubSpot creates the event and reports its rate-limit headers
    world.hubspot.answers = answers(POST=[Created("obj-1", {"X-HubSpot-RateLimit-Max": "190"})])
    # When the job's first attempt runs
    outcome = await world.attempt()
    # Then one POST went, the job is delivered with one attempt, the limiter saw the headers
    assert (outcome.kind, outcome.object_id) == ("delivered", "obj-1")
    assert world.hubspot.sent == ["POST"]
    object_id, attempts, record = world.store.delivered[0]
    assert (object_id, attempts, record.httpStatus) == ("obj-1", 1, 200)
    assert world.limiter.observed == [{"X-HubSpot-RateLimit-Max": "190"}]
    assert world.breaker.successes == 0  # a clean breaker has nothing to reset


async def test_an_ambiguous_job_is_re_sent_with_put_never_post(world: World) -> None:
    world.store.begun = Begun("ok", verify=True, attempts=2)
    world.hubspot.answers = answers(PUT=[Created("obj-2")])
    outcome = await world.attempt()
    assert outcome.kind == "delivered"
    assert world.hubspot.sent == ["PUT"]
    assert world.store.delivered[0][1] == 3


async def test_a_token_with_the_read_scope_looks_first_and_a_found_event_is_not_sent_again(
    world: World,
) -> None:
    world.store.begun = Begun("ok", verify=True, attempts=1)
    world.tokens.token = READABLE
    world.hubspot.answers = answers(GET=[Found("obj-3")])
    outcome = await world.attempt()
    assert (outcome.kind, outcome.object_id) == ("delivered", "obj-3")
    assert world.hubspot.sent == ["GET"]
    assert world.store.delivered[0][1] == 2


async def test_not_found_by_the_look_posts_in_the_same_attempt_with_its_own_slot(
    world: World,
) -> None:
    world.store.begun = Begun("ok", verify=True, attempts=1)
    world.tokens.token = READABLE
    world.hubspot.answers = answers(GET=[NotFound()], POST=[Created("obj-4")])
    outcome = await world.attempt()
    assert outcome.kind == "delivered"
    assert world.hubspot.sent == ["GET", "POST"]
    assert world.limiter.acquired == 2
    assert world.store.delivered[0][1] == 2  # the look and the POST are one attempt


async def test_a_refused_look_falls_back_to_put_never_to_a_dead_letter(world: World) -> None:
    world.store.begun = Begun("ok", verify=True, attempts=1)
    world.tokens.token = READABLE
    world.hubspot.answers = answers(
        GET=[HttpFailure(403, {"category": "MISSING_SCOPES"})], PUT=[Created("obj-5")]
    )
    outcome = await world.attempt()
    assert outcome.kind == "delivered"
    assert world.hubspot.sent == ["GET", "PUT"]
    assert world.store.dead == []


async def test_the_ledger_delivers_without_a_token_or_a_request(world: World) -> None:
    world.store.begun = Begun(
        "ok", verify=True, attempts=4, delivered_object_id="obj-6", in_ledger=True
    )
    world.tokens.error = CredentialsError("would fail if asked")
    outcome = await world.attempt()
    assert (outcome.kind, outcome.object_id) == ("delivered", "obj-6")
    assert world.hubspot.sent == []
    _, attempts, record = world.store.delivered[0]
    assert (attempts, record.detail, record.httpStatus) == (
        4,
        "already in the delivered ledger",
        None,
    )


async def test_an_account_without_a_token_is_dead_lettered_as_auth_without_a_request(
    world: World,
) -> None:
    world.tokens.error = CredentialsError("portal 42 is not connected; connect it")
    outcome = await world.attempt()
    assert outcome.kind == "dead_lettered"
    assert world.hubspot.sent == []
    entry = world.store.dead[0]
    assert (entry.reason, entry.error.message) == ("auth", "portal 42 is not connected; connect it")


async def test_a_busy_token_endpoint_parks_the_job_without_using_an_attempt(world: World) -> None:
    world.store.begun = Begun("ok", verify=True, attempts=2)
    world.tokens.error = CredentialsUnavailable("token endpoint busy", retry_after_s=30.0)
    before = time.time()
    outcome = await world.attempt()
    assert outcome.kind == "retrying"
    parked = world.store.parked[0]
    assert (parked["attempts"], parked["verify"]) == (2, True)
    assert parked["due_at"] >= before + 30.0
    assert parked["record"].outcome == "waiting"
    assert world.hubspot.sent == []


async def test_an_open_breaker_parks_the_job_until_it_may_probe(world: World) -> None:
    world.breaker.verdict = BreakerDecision(False, "open", time.time() + 45, probe=False)
    outcome = await world.attempt()
    assert outcome.kind == "retrying"
    assert outcome.detail == "circuit breaker open"
    assert world.store.parked[0]["attempts"] == 0
    assert world.hubspot.sent == []
    assert world.limiter.acquired == 0


async def test_a_limiter_refusal_parks_the_job_at_the_limiter_s_time(world: World) -> None:
    until = time.time() + 3600
    world.limiter.refuse_until = until
    outcome = await world.attempt()
    assert outcome.detail == "rate limit: paused:DAILY"
    assert world.store.parked[0]["due_at"] == until
    assert world.store.parked[0]["attempts"] == 0
    assert world.hubspot.sent == []


async def test_a_request_woken_past_its_slot_gives_it_back_and_sends_on_a_new_one(
    world: World,
) -> None:
    # Given the first grant's request wakes past its slot
    world.hubspot.answers = answers(POST=[Created("obj-1", {})])
    world.limiter.late = 1
    # When the attempt runs
    outcome = await world.attempt()
    # Then that slot is given back, a second one is taken, and one POST goes on it
    assert outcome.kind == "delivered"
    assert (world.limiter.acquired, len(world.limiter.released)) == (2, 1)
    assert world.hubspot.sent == ["POST"]


async def test_a_request_late_for_every_slot_is_parked_unsent_without_an_attempt(
    world: World,
) -> None:
    world.limiter.late = 3
    outcome = await world.attempt()
    assert outcome.detail == "rate limit: woke past its slot"
    assert (world.limiter.acquired, len(world.limiter.released)) == (3, 3)
    assert world.hubspot.sent == []
    assert world.store.parked[0]["attempts"] == 0


async def test_the_answer_s_headers_reach_the_limiter_with_the_request_s_send_time(
    world: World,
) -> None:
    world.hubspot.answers = answers(POST=[Created("obj-1", {"X-HubSpot-RateLimit-Max": "190"})])
    before = time.time()
    await world.attempt()
    [sent_at] = world.limiter.sent_at
    assert sent_at is not None
    assert before <= sent_at <= time.time()


async def test_a_429_pauses_the_bucket_once_and_uses_no_attempt(world: World) -> None:
    world.store.begun = Begun("ok", verify=False, attempts=1)
    headers = {"Retry-After": "7"}
    world.hubspot.answers = answers(
        POST=[HttpFailure(429, {"policyName": "TEN_SECONDLY_ROLLING"}, headers)]
    )
    outcome = await world.attempt()
    assert outcome.kind == "retrying"
    assert world.limiter.paused == [("app:test", "TEN_SECONDLY_ROLLING", 7.0)]
    assert world.limiter.observed == []  # a 429's headers go to after_429 only
    parked = world.store.parked[0]
    assert parked["attempts"] == 1
    assert parked["record"].httpStatus == 429
    assert outcome.next_attempt_at is not None
    assert outcome.next_attempt_at >= time.time() + 9  # past the limiter's 10 s pause


async def test_an_expired_token_is_refreshed_and_retried_at_once_without_an_attempt(
    world: World,
) -> None:
    world.hubspot.answers = answers(POST=[EXPIRED])
    before = time.time()
    outcome = await world.attempt()
    assert world.tokens.refreshed == 1
    assert outcome.detail == "token refreshed, retrying at once"
    parked = world.store.parked[0]
    assert parked["attempts"] == 0
    assert before <= parked["due_at"] <= time.time()
    assert parked["record"].outcome == "waiting"


async def test_an_expired_token_that_cannot_be_refreshed_is_dead_lettered_as_auth(
    world: World,
) -> None:
    world.tokens.refreshes = False
    world.hubspot.answers = answers(POST=[EXPIRED])
    outcome = await world.attempt()
    assert outcome.kind == "dead_lettered"
    entry = world.store.dead[0]
    assert (entry.reason, entry.httpStatus, entry.error.message) == ("auth", 401, "expired")


async def test_a_5xx_counts_against_the_breaker_and_makes_the_next_request_a_put(
    world: World,
) -> None:
    world.hubspot.answers = answers(POST=[HttpFailure(502, {"message": "bad gateway"})])
    outcome = await world.attempt()
    assert outcome.kind == "retrying"
    assert world.breaker.failures == 1
    parked = world.store.parked[0]
    assert (parked["attempts"], parked["verify"]) == (1, True)
    assert parked["record"].outcome == "retry"


async def test_a_connect_error_retries_as_a_post_and_counts_against_the_breaker(
    world: World,
) -> None:
    world.hubspot.answers = answers(POST=[NetworkFailure("connect", sent=False, detail="x")])
    await world.attempt()
    assert world.breaker.failures == 1
    assert world.store.parked[0]["verify"] is False


async def test_a_success_resets_a_breaker_only_when_failures_are_on_record(world: World) -> None:
    world.breaker.verdict = BreakerDecision(True, "closed", 0.0, probe=False, failures=2)
    world.hubspot.answers = answers(POST=[Created("obj-7")])
    await world.attempt()
    assert world.breaker.successes == 1


async def test_a_missing_scope_dead_letter_names_the_scope_and_the_fix(world: World) -> None:
    body = {
        "category": "MISSING_SCOPES",
        "message": "missing scopes",
        "errors": [{"context": {"requiredGranularScopes": [WRITE_SCOPE]}}],
    }
    world.hubspot.answers = answers(POST=[HttpFailure(403, body)])
    outcome = await world.attempt()
    assert outcome.kind == "dead_lettered"
    entry = world.store.dead[0]
    assert entry.reason == "auth"
    assert f"missing scope {WRITE_SCOPE}" in entry.error.message
    assert "eventq dlq replay" in entry.error.message


async def test_the_last_attempt_s_5xx_is_dead_lettered_as_exhausted(world: World) -> None:
    world.store.begun = Begun("ok", verify=True, attempts=4)
    world.hubspot.answers = answers(PUT=[HttpFailure(503, {})])
    outcome = await world.attempt()
    assert outcome.kind == "dead_lettered"
    assert world.store.dead[0].reason == "exhausted"


async def test_an_invalid_message_is_dead_lettered_as_invalid_without_a_request(
    world: World,
) -> None:
    outcome = await world.attempt(raw={"event": {"eventName": 5}})
    assert outcome.kind == "dead_lettered"
    assert world.store.dead[0].reason == "invalid"
    assert world.hubspot.sent == []


async def test_an_error_mid_attempt_releases_the_lock_and_propagates(world: World) -> None:
    world.hubspot.fail_with = ConnectionError("state Redis went away")
    with pytest.raises(ConnectionError):
        await world.attempt()
    assert len(world.store.released) == 1  # the message will be redelivered, the lock freed


async def test_a_job_locked_elsewhere_is_looked_at_again_after_the_lock_expires(
    world: World,
) -> None:
    world.store.begun = Begun("locked", verify=False, attempts=0)
    before = time.time()
    outcome = await world.attempt()
    assert outcome.kind == "skipped"
    assert world.store.looked_again[0] >= before + 30.0
    assert world.hubspot.sent == []


@dataclass
class SlowHubSpot(HubSpot):
    """HubSpot answering each create after a pause, counting the requests in flight."""

    in_flight: int = 0
    most_in_flight: int = 0

    async def create(self, body: Mapping[str, Any], token: str) -> AttemptResult:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0.01)
        self.in_flight -= 1
        return Created(f"obj-{body['externalEventId']}", {})


async def test_a_pack_sends_at_most_eventq_concurrency_of_its_jobs_alone_at_once(
    world: World,
) -> None:
    # Given a pack of 12 live events (each sent alone) and room for 10 jobs, 3 of them alone
    world.hubspot = SlowHubSpot()
    pack = [
        JobEnvelope(event=MarketingEvent.model_validate(valid_event(n))).model_dump(mode="json")
        for n in range(12)
    ]
    delivery = Delivery(
        jobs=world.store,
        client=world.hubspot,
        limiter=world.limiter,
        breaker=world.breaker,
        credentials=world.tokens,
        policy=Backoff(base_s=2.0, cap_s=60.0, jitter=0.2, max_attempts=5),
        max_limiter_wait_s=1.0,
        lock_ttl_ms=30_000,
    )
    # When the pack runs
    outcome = await delivery.run_pack(pack, "task-1", concurrency=10, alone=3)
    # Then every job was delivered, never more than 3 requests at once
    assert [o.kind for o in outcome.outcomes] == ["delivered"] * 12
    assert world.hubspot.most_in_flight == 3
