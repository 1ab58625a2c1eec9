"""Bulk delivery end to end: bulk jobs gathered per bucket into batch upserts (issue 11).

Real workers, the shared Redis, the fake HubSpot over loopback. Jobs are enqueued before the
worker starts, so a worker with room for more than one batch in flight fills whole batches.
"""

from __future__ import annotations

import redis

from eventq.dead_letters import DeadLetterStore
from eventq.keys import Keys
from fake_hubspot.control import FakeHubSpot
from producers.enqueue import Producer
from tests.conftest import Stack, valid_event
from tests.integration.helpers import wait_state

BATCH_ENV = {"EVENTQ_BATCH_WAIT_MS": "2000", "EVENTQ_BATCH_SIZE": "100"}


def _enqueue_bulk(stack: Stack, events: list[dict[str, object]]) -> list[str]:
    results = Producer(stack.settings).enqueue_many(events, priority="bulk")
    job_ids = [r.job_id for r in results if r.job_id]
    assert len(job_ids) == len(events)
    return job_ids


def _events_by_external_id(fake: FakeHubSpot) -> dict[str, list[dict[str, object]]]:
    found: dict[str, list[dict[str, object]]] = {}
    for event in fake.events():
        found.setdefault(str(event["externalEventId"]), []).append(event)
    return found


def test_1000_bulk_jobs_go_in_at_most_11_upserts_each_delivered_with_its_own_object_id(
    stack: Stack, fake: FakeHubSpot
) -> None:
    # Given a HubSpot taking batches of at most 100, shuffling its results, and 1,000 bulk jobs
    fake.configure_batch(max_size=100, shuffle=True)
    events = [valid_event(f"bulk-{i}") for i in range(1000)]
    job_ids = _enqueue_bulk(stack, events)
    # When one worker with room for two batches in flight delivers them
    stack.start_worker(concurrency=200, extra_env=BATCH_ENV)
    fake.wait_for_events(1000, timeout_s=90)
    statuses = [wait_state(stack, job_id, "delivered", timeout_s=60) for job_id in job_ids]
    # Then every event was created once, in at most 11 batch upserts and no single write
    by_id = _events_by_external_id(fake)
    assert len(by_id) == 1000
    assert all(len(copies) == 1 for copies in by_id.values())
    stats = fake.stats()
    assert stats["batch_upserts"] <= 11
    assert stats["batch_inputs"] == 1000
    # And each job carries the object id HubSpot gave its own event
    for event, status in zip(events, statuses, strict=True):
        assert status.objectId == by_id[str(event["externalEventId"])][0]["objectId"]
        assert status.attempts == 1


def test_a_refused_input_is_dead_lettered_rejected_alone_and_the_other_99_are_delivered(
    stack: Stack, fake: FakeHubSpot
) -> None:
    # Given 100 bulk jobs, one of which HubSpot refuses within a batch
    message = "eventName: this event's name is not allowed"
    fake.refuse_event("evt-refused-42", message)
    events = [valid_event(f"refused-{i}") for i in range(100)]
    job_ids = _enqueue_bulk(stack, events)
    # When a worker sends them in one batch
    stack.start_worker(concurrency=120, extra_env=BATCH_ENV)
    # Then the refused one is dead-lettered `rejected` with HubSpot's message, after one attempt
    refused = wait_state(stack, job_ids[42], "dead_lettered")
    entry = DeadLetterStore(
        redis.Redis.from_url(stack.settings.redis_url), Keys(stack.settings.key_prefix)
    ).get(refused.deadLetterId or "")
    assert entry is not None
    assert entry.reason == "rejected"
    assert entry.error.message == message
    assert entry.attempts[-1].batch is not None
    assert entry.attempts[-1].batchSize == 100
    # And the other 99 are delivered, from the one batch upsert
    for i, job_id in enumerate(job_ids):
        if i != 42:
            assert wait_state(stack, job_id, "delivered").objectId is not None
    assert fake.stats()["batch_upserts"] == 1
    assert len(fake.events()) == 99


def test_a_batch_whose_connection_drops_after_it_was_stored_is_sent_again_without_duplicates(
    stack: Stack, fake: FakeHubSpot
) -> None:
    # Given a HubSpot that stores the first write and then closes the connection unanswered
    fake.close_after_create(1)
    job_ids = _enqueue_bulk(stack, [valid_event(f"dropped-{i}") for i in range(50)])
    # When a worker delivers 50 bulk jobs
    stack.start_worker(concurrency=64, extra_env=BATCH_ENV)
    statuses = [wait_state(stack, job_id, "delivered") for job_id in job_ids]
    # Then the batch was sent again (a second attempt each) and no event exists twice
    assert fake.stats()["batch_upserts"] >= 2
    by_id = _events_by_external_id(fake)
    assert len(by_id) == 50
    assert all(len(copies) == 1 for copies in by_id.values())
    assert all(status.attempts == 2 for status in statuses)


def test_a_429_on_a_batch_pauses_the_bucket_uses_no_attempt_and_all_are_delivered_after(
    stack: Stack, fake: FakeHubSpot
) -> None:
    # Given a HubSpot answering the first write 429 with Retry-After 1
    fake.fail_next(
        1,
        429,
        headers={"Retry-After": "1"},
        body={
            "status": "error",
            "message": "You have reached your ten_secondly_rolling limit.",
            "category": "RATE_LIMITS",
            "policyName": "TEN_SECONDLY_ROLLING",
        },
    )
    job_ids = _enqueue_bulk(stack, [valid_event(f"limited-{i}") for i in range(50)])
    # When a worker delivers 50 bulk jobs
    stack.start_worker(concurrency=64, extra_env=BATCH_ENV)
    statuses = [wait_state(stack, job_id, "delivered") for job_id in job_ids]
    # Then every job is delivered on its first attempt (the 429 used none), each event once
    assert all(status.attempts == 1 for status in statuses)
    assert fake.stats()["by_status"].get("429") == 1
    assert len(_events_by_external_id(fake)) == 50
    assert len(fake.events()) == 50
    # And the bucket was paused once, not once per job
    assert stack.log_text().count("bucket paused") == 1
