"""Re-delivery without the read scope: PUT after an ambiguous attempt, GET only when allowed.

Also HubSpot's own states (423, 477) and 2xx answers without `objectId`. Real Redis, real
workers, the fake HubSpot over loopback; the test token is write-only, as a private app set up
for this job is.
"""

from __future__ import annotations

import itertools
import json

from fake_hubspot.config import READ_SCOPE, WRITE_SCOPE
from fake_hubspot.control import FakeHubSpot
from producers.enqueue import Producer
from tests.conftest import Stack, valid_event, wait_for
from tests.integration.helpers import states_of, wait_state, writes

READER = "reader-token-with-read-scope-0001"


def methods(fake: FakeHubSpot) -> list[str]:
    return [r["method"] for r in fake.requests()]


def test_300_events_with_a_fifth_of_writes_dropped_after_storing_arrive_once_without_a_get(
    stack: Stack, fake: FakeHubSpot
) -> None:
    # Given a write-only token, and HubSpot dropping 20 % of writes after storing the event
    fake.set_close_rate(0.2)
    stack.start_worker(concurrency=32)
    # When 300 events are delivered
    results = Producer(stack.settings).enqueue_many([valid_event(i) for i in range(300)])
    job_ids = [r.job_id for r in results if r.job_id is not None]
    assert len(job_ids) == 300

    def all_delivered() -> bool:
        return states_of(stack, job_ids)["delivered"] == 300

    wait_for(all_delivered, 90, "300 jobs delivered", every_s=0.5)
    # Then every event exists once, no job was dead-lettered, and not one GET was sent
    events = fake.events()
    assert len(events) == 300
    assert len({e["externalEventId"] for e in events}) == 300
    assert json.loads(stack.run_cli("dlq", "list", "--json").stdout)["entries"] == []
    assert methods(fake).count("GET") == 0
    # and the fault did bite: dropped creates were re-sent with PUT, never POSTed again
    dropped_posts = [r for r in fake.requests() if r["method"] == "POST" and r["closed"]]
    assert dropped_posts
    assert methods(fake).count("POST") == 300
    assert methods(fake).count("PUT") >= len(dropped_posts)


def test_replay_of_an_exhausted_job_whose_event_exists_makes_no_second_event(
    stack: Stack, fake: FakeHubSpot
) -> None:
    # Given a job whose every write was stored but never answered, so it ran out of attempts
    fake.set_close_rate(1.0)
    stack.start_worker()
    job_id, _ = Producer(stack.settings).enqueue(valid_event())
    job = wait_state(stack, job_id, "dead_lettered", timeout_s=40)
    entry = json.loads(stack.run_cli("dlq", "show", job.deadLetterId or "", "--json").stdout)
    assert entry["reason"] == "exhausted"
    assert len(fake.events()) == 1
    # When HubSpot answers again and the entry is replayed
    fake.set_close_rate(0.0)
    before = len(fake.requests())
    replayed = stack.run_cli("dlq", "replay", job.deadLetterId or "")
    assert replayed.returncode == 0, replayed.stderr
    # Then it is delivered with the existing event's id, by an upsert (a replay is a bulk job:
    # the batch upsert, EVENTQ_BULK_MODE=upsert by default): still one event
    job = wait_state(stack, job_id, "delivered")
    [event] = fake.events()
    assert job.objectId == event["objectId"]
    sent = [(r["method"], r["path"].rsplit("/", 1)[-1]) for r in fake.requests()[before:]]
    assert sent == [("POST", "upsert")]
    # and its record tells of that attempt: a fresh budget, numbered after the exhausted ones
    last_exhausted = entry["attempts"][-1]["attempt"]
    assert (job.attempts, job.lastAttempt) == (1, last_exhausted + 1)
    assert (job.lastStatus, job.lastError) == (200, None)


def test_477_with_retry_after_3_five_times_then_200_is_delivered_using_one_attempt(
    stack: Stack, fake: FakeHubSpot
) -> None:
    # Given HubSpot answers 477 (account migration) with Retry-After: 3 five times, then 200
    fake.fail_next(5, 477, headers={"Retry-After": "3"})
    stack.start_worker()
    job_id, _ = Producer(stack.settings).enqueue(valid_event())
    # When the job runs
    job = wait_state(stack, job_id, "delivered", timeout_s=60)
    # Then it is delivered, and the five 477s used none of its attempts
    assert job.attempts == 1
    posts = writes(fake.requests())
    assert [p["status"] for p in posts] == [477] * 5 + [200]
    assert [p["method"] for p in posts] == ["POST"] * 6  # a 477 is not ambiguous
    # and each wait honoured Retry-After
    for earlier, later in itertools.pairwise(posts):
        assert later["receivedAt"] - earlier["answeredAt"] >= 3.0
    assert len(fake.events()) == 1


def test_423_past_the_max_age_is_dead_lettered_as_exhausted(
    stack: Stack, fake: FakeHubSpot
) -> None:
    # Given a max age of 2 s and HubSpot answering 423 with Retry-After: 30, again and again
    fake.fail_next(10, 423, headers={"Retry-After": "30"})
    stack.start_worker(extra_env={"EVENTQ_MAX_AGE_S": "2"})
    job_id, _ = Producer(stack.settings).enqueue(valid_event())
    # Then the wait ends at the max age, and the next 423 gives up as exhausted
    job = wait_state(stack, job_id, "dead_lettered", timeout_s=20)
    entry = json.loads(stack.run_cli("dlq", "show", job.deadLetterId or "", "--json").stdout)
    assert entry["reason"] == "exhausted"
    assert "max age" in entry["attempts"][-1]["detail"]
    assert [p["status"] for p in writes(fake.requests())] == [423, 423]


def test_a_200_with_id_but_no_object_id_is_delivered_with_that_id(
    stack: Stack, fake: FakeHubSpot
) -> None:
    fake.fail_next(1, 200, body={"id": "777", "eventName": "Webinar 1", "eventOrganizer": "Acme"})
    stack.start_worker()
    job_id, _ = Producer(stack.settings).enqueue(valid_event())
    job = wait_state(stack, job_id, "delivered")
    assert job.objectId == "777"
    assert job.history[-1].detail == "delivered"


def test_a_2xx_with_neither_id_is_delivered_with_a_warning_and_no_object_id(
    stack: Stack, fake: FakeHubSpot
) -> None:
    # Given HubSpot answers 200 with a body naming no id at all
    fake.fail_next(1, 200, body={"eventName": "Webinar 1"})
    stack.start_worker()
    job_id, _ = Producer(stack.settings).enqueue(valid_event())
    # Then the job is delivered (never dead-lettered), with no object id and the warning
    job = wait_state(stack, job_id, "delivered")
    assert job.objectId is None
    assert "neither id nor objectId" in job.history[-1].detail
    assert "neither id nor objectId" in stack.log_text()
    # and `eventq status` shows it
    shown = stack.run_cli("status", job_id)
    assert shown.returncode == 0, shown.stderr
    assert "delivered" in shown.stdout


def test_a_token_declared_to_read_checks_with_get_and_a_found_event_is_not_sent_again(
    stack: Stack, fake: FakeHubSpot
) -> None:
    # Given a token that can read, declared so, and a create dropped after storing
    fake.add_token(READER, scopes=[READ_SCOPE, WRITE_SCOPE])
    fake.close_after_create(1)
    reader_env = {
        "EVENTQ_HUBSPOT_ACCESS_TOKEN": READER,
        "EVENTQ_HUBSPOT_TOKEN_HAS_READ_SCOPE": "true",
    }
    stack.start_worker(extra_env=reader_env)
    job_id, _ = Producer(stack.settings).enqueue(valid_event())
    # Then the retry looks first, finds the event and sends nothing more
    job = wait_state(stack, job_id, "delivered")
    [event] = fake.events()
    assert job.objectId == event["objectId"]
    assert methods(fake) == ["POST", "GET"]


def test_a_get_refused_403_falls_back_to_put_and_the_job_is_delivered(
    stack: Stack, fake: FakeHubSpot
) -> None:
    # Given a token declared to read that HubSpot gave the write scope only
    fake.close_after_create(1)
    stack.start_worker(extra_env={"EVENTQ_HUBSPOT_TOKEN_HAS_READ_SCOPE": "true"})
    job_id, _ = Producer(stack.settings).enqueue(valid_event())
    # Then the refused check means "cannot check": the event is re-sent with PUT, not dead-lettered
    job = wait_state(stack, job_id, "delivered")
    [event] = fake.events()
    assert job.objectId == event["objectId"]
    assert methods(fake) == ["POST", "GET", "PUT"]
    assert [r["status"] for r in fake.requests()][1:] == [403, 200]
