"""Packed messages: many recorded jobs in one `eventq.create_marketing_events` message.

Real Redis, real `celery worker` processes, the fake HubSpot over loopback. Each job of a pack
keeps its own record, attempts and outcome.
"""

from __future__ import annotations

import json
import signal
from typing import Any

from celery import Celery

from eventq.keys import Keys
from eventq.messaging import PACK_TASK_NAME, TASK_NAME
from eventq.schema import JobEnvelope, MarketingEvent
from fake_hubspot.control import FakeHubSpot
from producers.enqueue import Producer
from producers.replay import Replayer
from tests.conftest import Stack, valid_event, wait_for
from tests.integration.helpers import (
    queued_messages,
    states_of,
    status_of,
    wait_state,
    writes,
)
from tests.integration.http_support import seed_dead_letter


def job_ids_of(results: list[Any]) -> list[str]:
    return [r.job_id for r in results if r.job_id is not None]


def test_a_pack_of_5_events_is_one_message_named_for_flower_and_each_job_gets_its_object_id(
    stack: Stack, fake: FakeHubSpot, redis_client: Any
) -> None:
    # Given 5 events handed over at once (EVENTQ_PACK_SIZE defaults to 50)
    job_ids = job_ids_of(Producer(stack.settings).enqueue_many([valid_event(i) for i in range(5)]))
    # Then they wait as one pack message naming each job, summarised for Flower
    [message] = queued_messages(redis_client, stack.settings.queue)
    assert message["headers"]["task"] == PACK_TASK_NAME
    assert message["headers"]["argsrepr"] == "5 events: acct-1/evt-0 … acct-1/evt-4"
    assert message["args"] == [[[job_id, 1] for job_id in job_ids]]
    # When a worker runs it
    stack.start_worker()
    wait_for(lambda: states_of(stack, job_ids)["delivered"] == 5, 20, "5 jobs delivered")
    # Then each event was created once, and each job holds its own event's objectId
    created = {e["externalEventId"]: e["objectId"] for e in fake.events()}
    assert len(fake.events()) == 5
    assert len(writes(fake.requests())) == 5
    for n, job_id in enumerate(job_ids):
        job = status_of(stack, job_id)
        assert job is not None
        assert job.objectId == created[f"evt-{n}"]
        assert [(a.attempt, a.outcome) for a in job.history] == [(1, "delivered")]


def test_a_single_event_is_still_the_single_event_message(stack: Stack, redis_client: Any) -> None:
    # Given one event handed over alone, and two with packing off (EVENTQ_PACK_SIZE=1)
    Producer(stack.settings).enqueue_many([valid_event(1)])
    unpacked = stack.settings.model_copy(update={"pack_size": 1})
    Producer(unpacked).enqueue_many([valid_event(2), valid_event(3)])
    # Then each is today's single-event message, carrying its envelope
    messages = queued_messages(redis_client, stack.settings.queue)
    assert [m["headers"]["task"] for m in messages] == [TASK_NAME] * 3
    assert sorted(m["args"][0]["event"]["externalEventId"] for m in messages) == [
        "evt-1",
        "evt-2",
        "evt-3",
    ]


def test_a_pack_with_an_invalid_event_dead_letters_that_one_with_its_field_and_delivers_the_rest(
    stack: Stack, fake: FakeHubSpot
) -> None:
    # Given a raw Celery client sending a pack of three envelopes, the middle one with no name
    bad = valid_event(2)
    del bad["eventName"]
    good = [
        JobEnvelope(jobId=f"raw-pack-{n}", event=MarketingEvent.model_validate(valid_event(n)))
        for n in (1, 3)
    ]
    items = [good[0].to_message(), {"jobId": "raw-pack-2", "event": bad}, good[1].to_message()]
    stack.start_worker()
    app = Celery("raw-client", broker=stack.settings.effective_broker_url)
    app.send_task(PACK_TASK_NAME, args=[items], queue=stack.settings.queue)
    # Then the invalid one is dead-lettered as invalid, naming the field, and never sent
    job = wait_state(stack, "raw-pack-2", "dead_lettered")
    entry = json.loads(stack.run_cli("dlq", "show", job.deadLetterId or "", "--json").stdout)
    assert entry["reason"] == "invalid"
    assert "eventName: Field required" in entry["error"]["message"]
    # and the two others are delivered, each once
    for job_id in ("raw-pack-1", "raw-pack-3"):
        wait_state(stack, job_id, "delivered")
    assert sorted(e["externalEventId"] for e in fake.events()) == ["evt-1", "evt-3"]
    assert len(writes(fake.requests())) == 2


def test_a_failed_event_of_a_pack_retries_as_its_own_job_and_the_others_are_sent_once(
    stack: Stack, fake: FakeHubSpot
) -> None:
    # Given HubSpot answers the first write with a 503
    fake.fail_next(1, 503)
    stack.start_worker()
    # When a pack of 3 is delivered
    job_ids = job_ids_of(Producer(stack.settings).enqueue_many([valid_event(i) for i in range(3)]))
    wait_for(lambda: states_of(stack, job_ids)["delivered"] == 3, 20, "3 jobs delivered")
    # Then one job took a second attempt of its own (the retry schedule, a single message),
    # the others one attempt each, and every event exists once
    histories = [status_of(stack, job_id) for job_id in job_ids]
    attempts = sorted(len(h.history) for h in histories if h is not None)
    assert attempts == [1, 1, 2]
    assert len(fake.events()) == 3
    assert len(writes(fake.requests())) == 4
    assert "eventq.create_marketing_event[" in stack.log_text()  # the retry's single message


def test_a_pack_whose_worker_is_killed_mid_pack_is_redelivered_and_nothing_is_sent_twice(
    stack: Stack, fake: FakeHubSpot
) -> None:
    # Given a pack of 6 whose first 3 creates HubSpot never answers (short timeouts and waits,
    # so the attempt lock of the jobs in flight runs out soon after the redelivery)
    fast = {
        "EVENTQ_CONNECT_TIMEOUT_S": "0.5",
        "EVENTQ_READ_TIMEOUT_S": "2",
        "EVENTQ_MAX_LIMITER_WAIT_S": "0.2",
        "EVENTQ_VISIBILITY_TIMEOUT_S": "3",
    }
    stack.env.update(fast)
    fake.hang(3)
    first = stack.start_worker()
    job_ids = job_ids_of(Producer(stack.settings).enqueue_many([valid_event(i) for i in range(6)]))
    # When the worker is killed outright once the 3 others are delivered
    wait_for(lambda: states_of(stack, job_ids)["delivered"] == 3, 10, "3 of 6 delivered")
    done_before = {
        job_id: job.objectId
        for job_id in job_ids
        if (job := status_of(stack, job_id)) is not None and job.state == "delivered"
    }
    first.send_signal(signal.SIGKILL)
    first.wait(5)
    fake.release_hung()
    sent_before = len(fake.requests())
    stack.start_worker()
    # Then the pack is redelivered and every job ends delivered
    wait_for(lambda: states_of(stack, job_ids)["delivered"] == 6, 40, "6 jobs delivered")
    # with each event created once: the delivered ones were not sent again, the 3 in flight
    # were re-sent idempotently (PUT), never POSTed a second time
    assert sorted(e["externalEventId"] for e in fake.events()) == [f"evt-{i}" for i in range(6)]
    again = writes(fake.requests(since=sent_before))
    assert [r["method"] for r in again] == ["PUT"] * 3
    for job_id, object_id in done_before.items():
        job = status_of(stack, job_id)
        assert job is not None
        assert (job.objectId, len(job.history)) == (object_id, 1)


def test_a_replay_of_many_dead_letters_is_published_in_packs_and_each_is_delivered(
    stack: Stack, fake: FakeHubSpot, redis_client: Any
) -> None:
    # Given 5 dead letters (HubSpot had answered 503) and one id that is not in the DLQ
    entries = [
        seed_dead_letter(stack.settings, valid_event(f"rp-{n}"), reason="exhausted")
        for n in range(5)
    ]
    ids = [e.id for e in entries]
    # When they are replayed together
    results = list(Replayer(Producer(stack.settings)).replay_ids([*ids[:2], "dl-nope", *ids[2:]]))
    # Then each has its result, in order, and the 5 reopened jobs wait as one pack message
    assert [r.status for r in results] == ["replayed"] * 2 + ["missing"] + ["replayed"] * 3
    [message] = queued_messages(redis_client, stack.settings.bulk_queue)
    assert message["headers"]["task"] == PACK_TASK_NAME
    assert sorted(job_id for job_id, _ in message["args"][0]) == sorted(e.jobId for e in entries)
    # and once a worker runs it, each event is delivered once and the entries are gone
    stack.start_worker()
    job_ids = [e.jobId for e in entries]
    wait_for(lambda: states_of(stack, job_ids)["delivered"] == 5, 20, "5 replays delivered")
    assert sorted(e["externalEventId"] for e in fake.events()) == [f"evt-rp-{n}" for n in range(5)]
    assert redis_client.zcard(Keys(stack.settings.key_prefix).dlq) == 0
