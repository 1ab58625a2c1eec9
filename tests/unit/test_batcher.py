"""worker.batcher without Redis or HTTP: gathering per key, and a batch's answer to each member."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest
from pydantic import SecretStr

from eventq.schema import JobEnvelope, MarketingEvent
from eventq.settings import Settings
from tests.conftest import valid_event
from tests.unit.test_delivery import Breaker, Limiter, World
from worker.attempts import BatchAnswer, BatchAttemptResult, BatchError, Created, HttpFailure
from worker.batcher import Batcher, BatchSender, Gatherer, Member, jobs_in_flight
from worker.credentials import AccessToken
from worker.delivery import Delivery
from worker.retry_policy import Backoff

TOKEN = AccessToken(SecretStr("pat-secret"), "app:test", None, None)
TOO_LARGE = HttpFailure(
    400, {"message": "The maximum number of inputs supported in a batch request is 2."}
)


class Flushes:
    """A flush that records each batch and answers each item with its own double."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, list[int]]] = []

    async def __call__(self, key: str, items: list[int]) -> list[int]:
        self.batches.append((key, items))
        return [item * 2 for item in items]


async def test_a_full_batch_goes_at_once_without_waiting_for_its_time() -> None:
    # Given a gatherer of 3 items that would otherwise wait a minute
    flushes = Flushes()
    gatherer: Gatherer[str, int, int] = Gatherer(flushes, size_for=lambda _: 3, wait_s=60)
    # When 3 items of one key arrive
    results = await asyncio.wait_for(
        asyncio.gather(*(gatherer.submit("a", i) for i in (1, 2, 3))), 1
    )
    # Then they went as one batch, and each got its own result
    assert flushes.batches == [("a", [1, 2, 3])]
    assert results == [2, 4, 6]


async def test_a_batch_short_of_its_size_goes_when_its_wait_is_over() -> None:
    # Given a gatherer of 10 items waiting at most 50 ms
    flushes = Flushes()
    gatherer: Gatherer[str, int, int] = Gatherer(flushes, size_for=lambda _: 10, wait_s=0.05)
    # When 2 items arrive
    results = await asyncio.wait_for(
        asyncio.gather(gatherer.submit("a", 1), gatherer.submit("a", 2)), 1
    )
    # Then they went together once the wait was over, and nothing waits any more
    assert flushes.batches == [("a", [1, 2])]
    assert results == [2, 4]
    assert gatherer.waiting("a") == 0


async def test_items_of_different_keys_never_share_a_batch() -> None:
    # Given a gatherer of 2 items per key
    flushes = Flushes()
    gatherer: Gatherer[str, int, int] = Gatherer(flushes, size_for=lambda _: 2, wait_s=60)
    # When two items of each of two keys arrive, interleaved
    await asyncio.wait_for(
        asyncio.gather(*(gatherer.submit(k, i) for i, k in enumerate("abab"))), 1
    )
    # Then each key's items went in a batch of their own
    assert sorted(flushes.batches) == [("a", [0, 2]), ("b", [1, 3])]


async def test_an_error_while_sending_reaches_every_member_of_the_batch() -> None:
    # Given a flush that fails
    async def broken(key: str, items: list[int]) -> list[int]:
        raise ConnectionError("redis down")

    gatherer: Gatherer[str, int, int] = Gatherer(broken, size_for=lambda _: 2, wait_s=60)
    # When a batch of 2 is sent
    results = await asyncio.gather(
        gatherer.submit("a", 1), gatherer.submit("a", 2), return_exceptions=True
    )
    # Then both members see the error, as a single attempt would
    assert [type(r) for r in results] == [ConnectionError, ConnectionError]


class Slot:
    """A `prepare` that holds every due batch until `open()`, counting the batches it held."""

    def __init__(self, flushes: Flushes) -> None:
        self.flushes, self.held, self._open = flushes, 0, asyncio.Event()

    def open(self) -> None:
        self._open.set()

    async def __call__(self, key: str) -> Callable[[list[int]], Awaitable[list[int]]]:
        self.held += 1
        await self._open.wait()
        return partial(self.flushes, key)


async def test_a_due_batch_takes_the_items_that_arrive_while_it_waits_for_its_slot() -> None:
    # Given a gatherer of 10 whose batches wait for a slot, and 2 items whose wait is over
    flushes = Flushes()
    slot = Slot(flushes)
    gatherer: Gatherer[str, int, int] = Gatherer(
        flushes, size_for=lambda _: 10, wait_s=0.01, prepare=slot
    )
    first = [asyncio.ensure_future(gatherer.submit("a", i)) for i in (1, 2)]
    await asyncio.sleep(0.05)
    assert slot.held == 1
    # When 3 more items arrive before the slot comes
    later = [asyncio.ensure_future(gatherer.submit("a", i)) for i in (3, 4, 5)]
    await asyncio.sleep(0)
    slot.open()
    results = await asyncio.wait_for(asyncio.gather(*first, *later), 1)
    # Then all 5 went in the one batch, in one slot
    assert flushes.batches == [("a", [1, 2, 3, 4, 5])]
    assert results == [2, 4, 6, 8, 10]
    assert slot.held == 1


async def test_a_batch_full_while_it_waits_for_its_slot_leaves_later_items_a_new_one() -> None:
    # Given a gatherer of 3 whose batches wait for a slot, and 1 item whose wait is over
    flushes = Flushes()
    slot = Slot(flushes)
    gatherer: Gatherer[str, int, int] = Gatherer(
        flushes, size_for=lambda _: 3, wait_s=0.01, prepare=slot
    )
    items = [asyncio.ensure_future(gatherer.submit("a", 1))]
    await asyncio.sleep(0.05)
    # When 3 more arrive before the slot comes
    items += [asyncio.ensure_future(gatherer.submit("a", i)) for i in (2, 3, 4)]
    await asyncio.sleep(0)
    # Then the waiting batch is full at 3 and the 4th item waits in a new open batch
    assert gatherer.waiting("a") == 1
    slot.open()
    await asyncio.wait_for(asyncio.gather(*items), 1)
    assert flushes.batches == [("a", [1, 2, 3]), ("a", [4])]


def test_a_batching_worker_takes_room_for_two_full_batches_beside_its_concurrency() -> None:
    # Given the default concurrency (64) and batch size (100)
    upsert = Settings(bulk_mode="upsert", concurrency=64, batch_size=100)
    create = Settings(bulk_mode="create", concurrency=64, batch_size=100)
    # Then a worker that batches bulk jobs runs 264 at once, one that does not 64
    assert jobs_in_flight(upsert) == 264
    assert jobs_in_flight(create) == 64


@dataclass
class BatchHubSpot:
    """The batch upsert, in memory: scripted answers, else each input gets object id `obj-<n>`."""

    answers: list[BatchAttemptResult] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return "http://hubspot.test"

    async def upsert_batch(
        self, inputs: Sequence[Mapping[str, Any]], token: str
    ) -> BatchAttemptResult:
        self.sent.append(len(inputs))
        if self.answers:
            return self.answers.pop(0)
        return BatchAnswer(200, tuple(_echo(item) for item in inputs))


def _echo(item: Mapping[str, Any]) -> dict[str, Any]:
    echoed = {k: v for k, v in item.items() if k not in ("externalAccountId", "externalEventId")}
    return {**echoed, "objectId": "obj-" + str(item["externalEventId"])}


def _members(n: int) -> list[Member]:
    return [Member(TOKEN, valid_event(i)) for i in range(n)]


@pytest.fixture
def hubspot() -> BatchHubSpot:
    return BatchHubSpot()


def _sender(hubspot: BatchHubSpot, limiter: Limiter) -> BatchSender:
    return BatchSender(hubspot, limiter, Breaker(), size=4, max_limiter_wait_s=1.0)


async def test_each_member_gets_the_object_id_of_its_own_result_for_one_limiter_slot(
    hubspot: BatchHubSpot,
) -> None:
    # Given HubSpot upserts every input of a batch of 4
    limiter = Limiter()
    # When the batch is sent
    replies = await _sender(hubspot, limiter).send("app:test", _members(4))
    # Then one request took one slot, and each member got its own event's id
    assert (hubspot.sent, limiter.acquired) == ([4], 1)
    assert [r.result for r in replies] == [Created(f"obj-evt-{i}") for i in range(4)]
    assert len({r.batch_id for r in replies}) == 1
    assert replies[0].size == 4


async def test_a_refused_input_gets_a_400_with_hubspots_message_and_an_untold_one_is_unknown(
    hubspot: BatchHubSpot,
) -> None:
    # Given HubSpot refuses input 0 by its external ids and echoes nothing for input 1
    refused = BatchError(
        "name not allowed", "VALIDATION_ERROR", {"externalEventId": ("evt-0",)}, ()
    )
    members = _members(2)
    hubspot.answers = [BatchAnswer(207, (), (refused,), 1)]
    # When the batch is sent
    first, second = await _sender(hubspot, Limiter()).send("app:test", members)
    # Then the refused input is a 400 carrying HubSpot's message alone; the other is unknown
    assert isinstance(first.result, HttpFailure)
    assert (first.result.status, first.result.message) == (400, "name not allowed")
    assert second.result is None
    assert second.unknown


async def test_a_batch_too_large_is_cut_to_the_stated_limit_and_the_bucket_remembers_it(
    hubspot: BatchHubSpot,
) -> None:
    # Given HubSpot refuses a batch of 4 as above its maximum of 2
    hubspot.answers = [TOO_LARGE]
    sender = _sender(hubspot, Limiter())
    # When the batch is sent
    replies = await sender.send("app:test", _members(4))
    # Then its members went again in batches of 2, each member delivered, and the size stays
    assert hubspot.sent == [4, 2, 2]
    assert all(isinstance(r.result, Created) for r in replies)
    assert sender.size_for("app:test") == 2
    assert sender.size_for("app:other") == 4


async def test_a_429_answers_every_member_with_it_and_one_shared_pause(
    hubspot: BatchHubSpot,
) -> None:
    # Given HubSpot answers the batch 429
    limited = HttpFailure(429, {"policyName": "TEN_SECONDLY_ROLLING"}, {"Retry-After": "1"})
    hubspot.answers = [limited]
    limiter = Limiter()
    replies = await _sender(hubspot, limiter).send("app:test", _members(3))
    # When every member applies its pause through the batch's shared one
    pauses = []
    for reply in replies:
        assert reply.result == limited
        assert reply.pause is not None
        pauses.append(await reply.pause.run(lambda: limiter.after_429("app:test", "T", {}, 1.0)))
    # Then the bucket paused once, and all members wait for that one pause
    assert len(limiter.paused) == 1
    assert len(set(pauses)) == 1
    assert limiter.observed == []  # a 429's headers go to after_429, not observe


async def test_a_bulk_job_its_batch_cannot_tell_about_is_sent_alone_with_put_in_the_same_attempt(
    hubspot: BatchHubSpot,
) -> None:
    # Given a batch answer that echoes nothing, and a HubSpot whose PUT creates the event
    hubspot.answers = [BatchAnswer(200, ())]
    world = World()
    world.hubspot.answers = {"PUT": [Created("obj-alone")]}
    batcher = Batcher(_sender(hubspot, world.limiter), wait_s=0.0, live=False)
    delivery = Delivery(
        jobs=world.store,
        client=world.hubspot,
        limiter=world.limiter,
        breaker=world.breaker,
        credentials=world.tokens,
        policy=Backoff(),
        max_limiter_wait_s=1.0,
        lock_ttl_ms=30_000,
        batcher=batcher,
    )
    event = MarketingEvent.model_validate(valid_event(1))
    raw = JobEnvelope(event=event, priority="bulk").model_dump(mode="json")
    # When the bulk job's attempt runs
    outcome = await delivery.run(raw, "task-1")
    # Then it went in a batch of one, then alone with PUT, and is delivered with the PUT's id
    assert hubspot.sent == [1]
    assert world.hubspot.sent == ["PUT"]
    assert (outcome.kind, outcome.object_id) == ("delivered", "obj-alone")
    _, attempts, record = world.store.delivered[0]
    assert attempts == 1
    assert record.batchSize == 1
