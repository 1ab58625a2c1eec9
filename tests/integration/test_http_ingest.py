"""Ingest over HTTP: 202 with a job, per-item batch results, no double enqueue, delivery."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
import redis

from eventq.jobs import create_job
from eventq.keys import Keys
from eventq.schema import JobEnvelope, MarketingEvent
from fake_hubspot.control import FakeHubSpot
from producers.enqueue import Producer
from tests.conftest import Stack, valid_event
from tests.integration.helpers import queued_jobs, wait_state
from tests.integration.http_support import (
    PRODUCER_KEY,
    Api,
)

AUTH = {"Authorization": f"Bearer {PRODUCER_KEY}"}


@pytest.fixture
def service_env() -> dict[str, str]:
    return {"EVENTQ_MAX_BATCH_SIZE": "50"}


def queued(stack: Stack, redis_client: redis.Redis) -> int:
    return queued_jobs(redis_client, stack.env["EVENTQ_QUEUE"])


def job_keys(stack: Stack, redis_client: redis.Redis) -> list[bytes]:
    prefix = stack.settings.key_prefix
    return [
        k
        for k in redis_client.scan_iter(f"{prefix}:job:*", count=10_000)
        if not k.endswith((b":history", b":envelope"))
    ]


def test_a_valid_event_is_accepted_with_202_and_its_job_is_queued(
    stack: Stack, api: Api, redis_client: redis.Redis
) -> None:
    response = api.post("/v1/events", json=valid_event())
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    assert body["duplicate"] is False
    job = api.get(f"/v1/jobs/{body['jobId']}").json()
    assert job["state"] == "queued"
    assert job["source"] == "http"
    assert queued(stack, redis_client) == 1


def test_the_same_event_again_returns_the_live_job_as_a_duplicate(
    stack: Stack, api: Api, redis_client: redis.Redis
) -> None:
    first = api.post("/v1/events", json=valid_event()).json()
    again = api.post("/v1/events", json=valid_event(eventName="Renamed")).json()
    assert again == {
        "jobId": first["jobId"],
        "status": "queued",
        "duplicate": True,
        "warnings": [],
    }
    assert queued(stack, redis_client) == 1


async def post_concurrently(
    base_url: str, bodies: list[dict[str, object]], headers: dict[str, str]
) -> list[dict[str, object]]:
    async with aiohttp.ClientSession(headers=AUTH) as session:

        async def post(body: dict[str, object]) -> dict[str, object]:
            async with session.post(base_url + "/v1/events", json=body, headers=headers) as r:
                assert r.status == 202
                answer: dict[str, object] = await r.json()
                return answer

        return await asyncio.gather(*(post(body) for body in bodies))


def test_50_concurrent_identical_requests_make_one_job_delivered_once(
    stack: Stack, fake: FakeHubSpot, api: Api, redis_client: redis.Redis
) -> None:
    # When 50 clients send the same event at once
    answers = asyncio.run(post_concurrently(api.base_url, [valid_event()] * 50, {}))
    # Then there is one job, and 49 answers say "duplicate" with its id
    job_ids = {a["jobId"] for a in answers}
    assert len(job_ids) == 1
    assert sum(1 for a in answers if a["duplicate"]) == 49
    assert len(job_keys(stack, redis_client)) == 1
    # and a worker creates the event in HubSpot once (Producer.submit may publish the job's
    # message again for a duplicate that arrives before the first publish is recorded)
    stack.start_worker()
    wait_state(stack, job_ids.pop(), "delivered")
    assert len(fake.events()) == 1


def test_50_concurrent_requests_with_one_idempotency_key_make_one_job(
    stack: Stack, api: Api, redis_client: redis.Redis
) -> None:
    # When 50 clients retry "the same request" with one Idempotency-Key (bodies differ)
    bodies = [valid_event(i) for i in range(50)]
    answers = asyncio.run(post_concurrently(api.base_url, bodies, {"Idempotency-Key": "order-7"}))
    # Then only one of them made a job
    assert len({a["jobId"] for a in answers}) == 1
    assert len(job_keys(stack, redis_client)) == 1
    # and the key is scoped: another request with another key makes a new job
    other = api.post("/v1/events", json=valid_event(99), headers={"Idempotency-Key": "order-8"})
    assert other.json()["duplicate"] is False


def test_a_batch_enqueues_the_valid_items_and_reports_each_invalid_one(
    stack: Stack, api: Api, redis_client: redis.Redis
) -> None:
    # Given a batch with two valid events, two invalid ones and a repeat of the first
    bad_name = valid_event(3)
    del bad_name["eventName"]
    bad_property = valid_event(4, customProperties=[{"name": 7, "value": "v"}])
    items = [valid_event(1), bad_name, valid_event(2), bad_property, valid_event(1), "text"]
    # When it is posted
    response = api.post("/v1/events/batch", json={"events": items})
    # Then the valid ones are enqueued despite the others, and each problem is named
    assert response.status_code == 202
    body = response.json()
    assert (body["accepted"], body["rejected"], body["duplicates"]) == (3, 3, 1)
    results = body["results"]
    assert [r["status"] for r in results] == [
        "accepted",
        "rejected",
        "accepted",
        "rejected",
        "accepted",
        "rejected",
    ]
    assert results[1]["errors"] == [{"field": "eventName", "message": "Field required"}]
    assert results[3]["errors"][0]["field"] == "customProperties.0.name"
    assert results[5]["errors"] == [{"field": "event", "message": "expected a JSON object"}]
    assert results[4]["jobId"] == results[0]["jobId"]
    assert results[4]["duplicate"] is True
    assert queued(stack, redis_client) == 2
    assert api.get(f"/v1/jobs/{results[2]['jobId']}").json()["state"] == "queued"


def test_a_batch_over_max_batch_size_is_422_and_enqueues_nothing(
    stack: Stack, api: Api, redis_client: redis.Redis
) -> None:
    response = api.post("/v1/events/batch", json={"events": [valid_event(i) for i in range(51)]})
    assert response.status_code == 422
    assert response.json()["errors"][0] == {
        "field": "events",
        "message": "List should have at most 50 items after validation, not 51",
    }
    assert queued(stack, redis_client) == 0


def test_a_batch_idempotency_key_covers_each_item_once(
    stack: Stack, api: Api, redis_client: redis.Redis
) -> None:
    headers = {"Idempotency-Key": "import-2027-01"}
    first = api.post("/v1/events/batch", json={"events": [valid_event(1)]}, headers=headers)
    again = api.post("/v1/events/batch", json={"events": [valid_event(2)]}, headers=headers)
    assert again.json()["results"][0]["jobId"] == first.json()["results"][0]["jobId"]
    assert queued(stack, redis_client) == 1


def test_an_unknown_job_is_404(api: Api) -> None:
    response = api.get("/v1/jobs/no-such-job")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_events_sent_over_http_are_delivered_and_their_status_shows_the_object_id(
    stack: Stack, fake: FakeHubSpot, api: Api
) -> None:
    # Given a worker, one event sent alone and 20 in a batch
    stack.start_worker()
    single = api.post("/v1/events", json=valid_event("one")).json()
    batch = api.post("/v1/events/batch", json={"events": [valid_event(i) for i in range(20)]})
    job_ids = [single["jobId"]] + [r["jobId"] for r in batch.json()["results"]]
    # When they are delivered
    events = fake.wait_for_events(21, timeout_s=30)
    # Then each arrived once and its job shows HubSpot's objectId
    object_ids = {e["body"]["externalEventId"]: e["objectId"] for e in events}
    assert len(object_ids) == 21
    wait_state(stack, single["jobId"], "delivered")
    job = api.get(f"/v1/jobs/{single['jobId']}").json()
    assert job["state"] == "delivered"
    assert job["objectId"] == object_ids["evt-one"]
    assert [h["outcome"] for h in job["history"]][-1] == "delivered"
    for job_id in job_ids:
        wait_state(stack, job_id, "delivered")


def test_a_batch_item_is_recorded_exactly_as_producer_enqueue_records_it(
    stack: Stack, api: Api, redis_client: redis.Redis
) -> None:
    # Given one event through the Python API and one through the batch route
    python_job, _ = Producer(stack.settings).enqueue(valid_event("py"), source="http")
    batch = api.post("/v1/events/batch", json={"events": [valid_event("http")]}).json()
    http_job = batch["results"][0]["jobId"]
    # Then both jobs have the same fields, the same values where they do not name the event,
    # and both are in the unfinished set and marked published
    prefix = stack.settings.key_prefix
    python_hash = redis_client.hgetall(f"{prefix}:job:{python_job}")
    http_hash = redis_client.hgetall(f"{prefix}:job:{http_job}")
    assert set(http_hash) == set(python_hash)
    varying = {b"jobId", b"summary", b"createdAt", b"updatedAt", b"dedupeKey"}
    assert {k: v for k, v in http_hash.items() if k not in varying} == {
        k: v for k, v in python_hash.items() if k not in varying
    }
    assert http_hash[b"published"] == b"1"
    assert redis_client.zscore(f"{prefix}:unfinished", http_job) is not None
    assert queued(stack, redis_client) == 2


def test_a_batch_publishes_a_duplicate_whose_producer_died_before_publishing(
    stack: Stack, api: Api, redis_client: redis.Redis
) -> None:
    # Given a job recorded by a producer that died before publishing its message
    settings = stack.settings
    envelope = JobEnvelope(event=MarketingEvent.model_validate(valid_event()), source="api")
    created = create_job(
        redis_client, Keys(settings.key_prefix), envelope, dedupe_ttl_s=settings.ledger_ttl_s
    )
    # (a minute ago: past the grace period in which its producer could still be publishing)
    redis_client.hset(f"{settings.key_prefix}:job:{created.job_id}", "createdAt", time.time() - 60)
    assert queued(stack, redis_client) == 0
    # When the same event arrives twice in a batch
    body = api.post("/v1/events/batch", json={"events": [valid_event(), valid_event()]}).json()
    # Then both items answer the recorded job, and its message is published once
    assert [r["jobId"] for r in body["results"]] == [created.job_id] * 2
    assert queued(stack, redis_client) == 1
    assert redis_client.hget(f"{settings.key_prefix}:job:{created.job_id}", "published") == b"1"


def test_an_event_hubspot_accepts_but_we_advise_against_is_202_with_warnings(
    stack: Stack, api: Api, redis_client: redis.Redis
) -> None:
    # Given the eventUrl of HubSpot's own guide, "testURL" (not an http URL)
    event = valid_event("guide-url", eventUrl="testURL")
    # When it is posted
    response = api.post("/v1/events", json=event)
    # Then it is enqueued, with a warning naming the field
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    assert [w["field"] for w in body["warnings"]] == ["eventUrl"]
    assert "http(s) URL" in body["warnings"][0]["message"]
    assert queued(stack, redis_client) == 1
    # and a clean event has no warnings
    assert api.post("/v1/events", json=valid_event("clean")).json()["warnings"] == []


def test_a_batch_reports_warnings_per_item_and_enqueues_every_accepted_one(
    stack: Stack, api: Api, redis_client: redis.Redis
) -> None:
    # Given a batch: a clean event, one with end before start, and one refused (no zone)
    events = [
        valid_event("b-clean"),
        valid_event("b-order", endDateTime="2027-03-01T08:00:00Z"),
        valid_event("b-naive", startDateTime="2027-03-01T10:00:00"),
    ]
    # When it is posted
    body = api.post("/v1/events/batch", json={"events": events}).json()
    # Then the warned item is accepted with its warning, the refused one names the accepted form
    results = body["results"]
    assert [r["status"] for r in results] == ["accepted", "accepted", "rejected"]
    assert results[0]["warnings"] == []
    assert results[1]["warnings"] == [
        {"field": "endDateTime", "message": "is before startDateTime"}
    ]
    assert results[2]["errors"][0]["field"] == "startDateTime"
    assert "add Z or +01:00, e.g. 2026-03-01T18:00:00Z" in results[2]["errors"][0]["message"]
    assert queued(stack, redis_client) == 2
