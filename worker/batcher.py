"""Bulk delivery: attempts of one rate-limit bucket gathered into one batch upsert.

A bulk attempt (`worker.delivery`), once it has claimed its job and has a token, hands its create
body to the process's `Batcher` instead of sending it alone. The batcher gathers the bodies of
one bucket (a private app's token, or an OAuth account) until `size` of them wait or `wait_s`
has passed since the first (`Gatherer`, no I/O of its own). The batch then asks the breaker and
the limiter for its slot (`BatchSender.reserve`) and stays open while it waits: bodies keep
joining it up to `size`, so a batch the limiter holds back anyway does not spend a request of
the budget half empty. In its slot `BatchSender` sends it as ONE `POST .../events/upsert`: one
breaker check, one limiter slot. Each member gets a `BatchReply` with its own result, which its
attempt decides and applies like a single attempt's answer:

- an input tied to a result (`batch_results.match_results`) → `Created` with that object id;
- an input an error names → a 400 `HttpFailure` carrying HubSpot's message for that input;
- an input the answer does not tell about → `unknown`: its attempt sends it alone (PUT);
- a whole-batch failure (429, 5xx, timeout, dropped connection) → that same result for every
  member, with one shared `Once` so a 429 pauses the bucket once, not once per member;
- a 400 that says the batch is too large → the bucket's size is halved (or cut to the stated
  limit) for the life of the process and the members are re-sent in smaller batches.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, Protocol, TypeVar

from eventq.schema import JobEnvelope
from eventq.settings import Settings
from worker.attempts import (
    AttemptResult,
    BatchAnswer,
    BatchAttemptResult,
    Created,
    HttpFailure,
    NetworkFailure,
)
from worker.batch_results import Failed, InputOutcome, Matched, is_batch_too_large, match_results
from worker.circuit_breaker import Breaker, is_struggling
from worker.credentials import AccessToken
from worker.rate_limit import Grant, Limiter
from worker.retry_policy import Refusal

__all__ = [
    "BatchApi",
    "BatchReply",
    "BatchSender",
    "Batcher",
    "Gatherer",
    "Member",
    "Once",
    "is_batched",
    "jobs_in_flight",
]

log = logging.getLogger("eventq.batch")

K = TypeVar("K")
I = TypeVar("I")  # noqa: E741 - the item type, beside K and R
R = TypeVar("R")
T = TypeVar("T")


def jobs_in_flight(settings: Settings) -> int:
    """Return how many jobs one worker process runs at once (Celery's concurrency).

    `EVENTQ_CONCURRENCY`, plus, where bulk jobs are batched, room for two full batches: one
    filling while the other is in flight. Without it a batch could never carry more jobs than
    the concurrency (64 by default, below the batch size of 100), and a backfill against 100
    requests per 10 s ran at a third of what the budget allows (bench/RESULTS.md, backfill).
    """
    if settings.bulk_mode != "upsert":
        return settings.concurrency
    return settings.concurrency + 2 * settings.batch_size


def is_batched(settings: Settings, job: object) -> bool:
    """Return True when a message's job (its envelope as sent) will join a batch upsert: bulk
    jobs when EVENTQ_BULK_MODE=upsert, live ones too with EVENTQ_LIVE_BATCHING. Anything else
    (a bare event, a shape this does not know) counts as sent alone."""
    if settings.bulk_mode != "upsert":
        return False
    return settings.live_batching or (isinstance(job, Mapping) and job.get("priority") == "bulk")


class Once:
    """Runs one coroutine for all who ask, and gives each its result (a 429's one pause)."""

    def __init__(self) -> None:
        self._future: asyncio.Future[Any] | None = None

    async def run(self, make: Callable[[], Awaitable[T]]) -> T:
        """Return the result of `make()`, awaited by the first caller only."""
        if self._future is None:
            self._future = asyncio.ensure_future(make())
        result: T = await asyncio.shield(self._future)
        return result


@dataclass
class _Pending(Generic[I, R]):
    items: list[tuple[I, asyncio.Future[R]]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None
    due: bool = False  # full or its wait is over: getting ready to go


Flush = Callable[[list[I]], Awaitable[Sequence[R]]]


class Gatherer(Generic[K, I, R]):
    """Gathers items per key and hands each key's items to `flush` together.

    A key's batch is due when `size_for(key)` items wait, or `wait_s` after the first of them
    arrived, whichever comes first. A due batch awaits `prepare(key)` (a rate-limit slot, say)
    and stays open meanwhile: items keep joining it until it is full, so a batch that must wait
    for its slot anyway does not go short. `prepare` returns the function that sends it (default:
    `flush` for its key); that returns one result per item, in order; `submit` returns its
    item's result (or raises what `prepare` or the send raised).
    """

    def __init__(
        self,
        flush: Callable[[K, list[I]], Awaitable[Sequence[R]]],
        *,
        size_for: Callable[[K], int],
        wait_s: float,
        prepare: Callable[[K], Awaitable[Flush[I, R]]] | None = None,
    ) -> None:
        self._flush_items, self._size_for, self._wait_s = flush, size_for, wait_s
        self._prepare = prepare
        self._pending: dict[K, _Pending[I, R]] = {}  # each key's open batch
        self._sending: set[asyncio.Task[None]] = set()

    async def submit(self, key: K, item: I) -> R:
        """Add `item` to its key's open batch and return its result once the batch is sent."""
        loop = asyncio.get_running_loop()
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending()
            pending.timer = loop.call_later(self._wait_s, self._due, key, pending)
        future: asyncio.Future[R] = loop.create_future()
        pending.items.append((item, future))
        if len(pending.items) >= self._size_for(key):
            self._close(key, pending)
            self._due(key, pending)
        return await future

    def waiting(self, key: K) -> int:
        """Return how many items of `key` wait in its open batch."""
        pending = self._pending.get(key)
        return 0 if pending is None else len(pending.items)

    def _close(self, key: K, pending: _Pending[I, R]) -> None:
        """Let no more items join `pending` (the next ones open a new batch)."""
        if self._pending.get(key) is pending:
            del self._pending[key]

    def _due(self, key: K, pending: _Pending[I, R]) -> None:
        if pending.due:  # already on its way (full before its timer fired)
            return
        pending.due = True
        if pending.timer is not None:
            pending.timer.cancel()
        task = asyncio.ensure_future(self._send(key, pending))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, key: K, pending: _Pending[I, R]) -> None:
        try:
            if self._prepare is None:
                send: Flush[I, R] = partial(self._flush_items, key)
            else:
                send = await self._prepare(key)
            self._close(key, pending)
            results = await send([item for item, _ in pending.items])
        except BaseException as error:  # every member's attempt sees the error, as if alone
            self._close(key, pending)
            for _, future in pending.items:
                if not future.done():
                    future.set_exception(error)
            if isinstance(error, asyncio.CancelledError):
                raise
            return
        for (_, future), result in zip(pending.items, results, strict=True):
            if not future.done():  # a member's attempt may have been cancelled (shutdown)
                future.set_result(result)


@dataclass(frozen=True)
class Member:
    """One job's part of a batch: its create body and the token it is sent with."""

    token: AccessToken
    body: Mapping[str, Any]


@dataclass(frozen=True)
class BatchReply:
    """What one member learns from its batch; exactly one of `result`, `refusal`, `unknown`.

    `result`: its own answer (Created, or a 400 for its refused input) or the whole batch's
    failure; `refusal`: the breaker or the limiter said not now; `unknown`: the answer did not
    tell, send it alone. `pause` is shared by the members of one batch that HubSpot answered 429.
    """

    batch_id: str
    size: int
    result: AttemptResult | None = None
    refusal: Refusal | None = None
    unknown: str | None = None
    pause: Once | None = None


class BatchApi(Protocol):
    """What the batcher asks of HubSpot (HubSpotClient)."""

    @property
    def base_url(self) -> str:
        """Return the HubSpot base URL (the circuit breaker's target)."""
        ...

    async def upsert_batch(
        self, inputs: Sequence[Mapping[str, Any]], token: str
    ) -> BatchAttemptResult:
        """POST the bodies as one batch upsert."""
        ...


@dataclass(frozen=True)
class _Slot:
    """The breaker's and the limiter's say on one batch: the grant it is sent in, or why not."""

    grant: Grant | None = None
    refusal: Refusal | None = None
    breaker_clean: bool = True


class BatchSender:
    """Sends one bucket's members as batch upserts and tells each member its own outcome."""

    def __init__(
        self,
        client: BatchApi,
        limiter: Limiter,
        breaker: Breaker,
        *,
        size: int,
        max_limiter_wait_s: float,
    ) -> None:
        self.client, self.limiter, self.breaker = client, limiter, breaker
        self.size, self.max_limiter_wait_s = size, max_limiter_wait_s
        self._sizes: dict[str, int] = {}  # buckets whose batches HubSpot found too large

    def size_for(self, bucket: str) -> int:
        """Return the most members one batch of `bucket` may carry."""
        return self._sizes.get(bucket, self.size)

    async def reserve(self, bucket: str) -> Flush[Member, BatchReply]:
        """Wait for the breaker's and the limiter's go for one batch of `bucket` (sleeping until
        its slot comes); return the function that sends that batch's members in the slot."""
        return partial(self._send, bucket, await self._slot(bucket))

    async def send(self, bucket: str, members: list[Member]) -> list[BatchReply]:
        """Send `members` as one batch upsert (or several, when HubSpot finds it too large)."""
        return await self._send(bucket, await self._slot(bucket), members)

    async def _slot(self, bucket: str) -> _Slot:
        verdict = await self.breaker.allow(self.client.base_url)
        if not verdict.allowed:
            return _Slot(refusal=Refusal(verdict.retry_at, f"circuit breaker {verdict.state}"))
        grant = await self.limiter.acquire(bucket, self.max_limiter_wait_s)
        if not grant.granted:
            return _Slot(refusal=Refusal(grant.retry_at, f"rate limit: {grant.reason}"))
        if grant.wait_s > 0:
            await asyncio.sleep(grant.wait_s)
        return _Slot(grant=grant, breaker_clean=verdict.clean)

    async def _send(self, bucket: str, slot: _Slot, members: list[Member]) -> list[BatchReply]:
        batch_id, n = uuid.uuid4().hex[:12], len(members)
        if slot.grant is None:
            return [BatchReply(batch_id, n, refusal=slot.refusal)] * n
        inputs = [member.body for member in members]
        answer = await self.client.upsert_batch(inputs, members[0].token.value.get_secret_value())
        await self._observe(
            bucket, answer, breaker_clean=slot.breaker_clean, sent_at=slot.grant.send_at
        )
        if isinstance(answer, HttpFailure):
            too_large = is_batch_too_large(answer)
            if too_large is not None and n > 1:
                return await self._smaller(bucket, members, too_large.limit)
        if not isinstance(answer, BatchAnswer):
            log.warning("batch %s of %d jobs failed as a whole: %s", batch_id, n, _describe(answer))
            return [BatchReply(batch_id, n, result=answer, pause=Once())] * n
        outcomes = match_results(inputs, answer)
        log.info("batch %s: %d jobs upserted in one request", batch_id, n)
        return [_reply(batch_id, n, answer, outcome) for outcome in outcomes]

    async def _smaller(
        self, bucket: str, members: list[Member], limit: int | None
    ) -> list[BatchReply]:
        size = max(1, min(len(members) // 2, limit or len(members)))
        self._sizes[bucket] = min(size, self.size_for(bucket))
        log.warning(
            "HubSpot found a batch of %d too large: bucket's batches now %d", len(members), size
        )
        replies: list[BatchReply] = []
        for start in range(0, len(members), size):
            replies += await self.send(bucket, members[start : start + size])
        return replies

    async def _observe(
        self, bucket: str, answer: BatchAttemptResult, *, breaker_clean: bool, sent_at: float
    ) -> None:
        """Tell the limiter HubSpot's headers and the breaker how HubSpot is doing (once)."""
        if answer.headers and not (isinstance(answer, HttpFailure) and answer.status == 429):
            # a 429's: after_429, once
            await self.limiter.observe(bucket, answer.headers, sent_at)
        if isinstance(answer, HttpFailure | NetworkFailure) and is_struggling(answer):
            await self.breaker.record_failure(self.client.base_url)
        elif not breaker_clean:
            await self.breaker.record_success(self.client.base_url)


def _reply(batch_id: str, n: int, answer: BatchAnswer, outcome: InputOutcome) -> BatchReply:
    if isinstance(outcome, Matched):
        created = Created(outcome.object_id, answer.headers, answer.latency_ms)
        return BatchReply(batch_id, n, result=created)
    if isinstance(outcome, Failed):  # decided like a single 400, with HubSpot's message alone
        error = outcome.error
        body: dict[str, Any] = {
            "message": error.message,
            "errors": [dict(d) for d in error.details],
        }
        if error.category:
            body["category"] = error.category
        refused = HttpFailure(400, body, answer.headers, answer.latency_ms)
        return BatchReply(batch_id, n, result=refused)
    return BatchReply(batch_id, n, unknown=outcome.reason)


def _describe(answer: HttpFailure | NetworkFailure) -> str:
    if isinstance(answer, HttpFailure):
        return f"HTTP {answer.status}: {answer.message}"
    return f"{answer.kind}: {answer.detail}"


class Batcher:
    """The process's batches: which attempts join one, and the per-bucket gathering."""

    def __init__(self, sender: BatchSender, *, wait_s: float, live: bool) -> None:
        self.sender, self.live = sender, live
        self._gatherer: Gatherer[str, Member, BatchReply] = Gatherer(
            sender.send, size_for=sender.size_for, wait_s=wait_s, prepare=sender.reserve
        )

    def takes(self, envelope: JobEnvelope) -> bool:
        """Return True when the job's writes go in a batch: bulk jobs, live ones if configured."""
        return envelope.priority == "bulk" or self.live

    async def submit(self, token: AccessToken, body: Mapping[str, Any]) -> BatchReply:
        """Join the next batch of the token's bucket; return this job's reply."""
        return await self._gatherer.submit(token.bucket, Member(token, body))
