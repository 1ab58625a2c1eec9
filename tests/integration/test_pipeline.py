"""The delivery pipeline end to end: real Redis, real `celery worker` processes, the fake HubSpot.

Timing tolerances: the retry schedule is polled every 50 ms in these tests and a worker needs a
few ms to pick a job up, so observed gaps may exceed the policy's delay by up to 0.6 s, never
fall short of its lower jitter bound.
"""

from __future__ import annotations

import getpass
import json
import signal

import pytest
import redis
import redis as redis_lib

from eventq.keys import Keys
from eventq.records import AuditEntry
from fake_hubspot.control import FakeHubSpot
from producers.enqueue import Producer
from tests.conftest import TOKEN, Stack, valid_event, wait_for
from tests.integration.helpers import (
    send_raw,
    wait_state,
    writes,
)

SLACK_S = 0.6


def test_400_events_from_the_python_api_and_the_cli_arrive_exactly_once(
    stack: Stack, fake: FakeHubSpot
) -> None:
    # Given a worker, 200 events through the Python API and 200 through `eventq enqueue`
    stack.start_worker(concurrency=32)
    results = Producer(stack.settings).enqueue_many([valid_event(i) for i in range(200)])
    lines = "\n".join(json.dumps(valid_event(f"cli-{i}")) for i in range(200))
    cli = stack.run_cli("enqueue", "-", stdin=lines)
    assert cli.returncode == 0, cli.stderr
    assert "200 enqueued" in cli.stderr
    # When they are delivered
    events = fake.wait_for_events(400, timeout_s=60)
    # Then exactly 400 events exist, and every body was valid against HubSpot's spec: the fake
    # checks each create body against the spec's schema and answers 400 to any that is not
    assert len(events) == 400
    assert len({(e["body"]["externalEventId"]) for e in events}) == 400
    assert [p["status"] for p in writes(fake.requests())] == [200] * 400
    # and every job is delivered with the objectId HubSpot gave it
    object_ids = {e["body"]["externalEventId"]: e["objectId"] for e in events}
    for index, result in enumerate(results):
        assert result.job_id is not None
        job = wait_state(stack, result.job_id, "delivered")
        assert job.objectId == object_ids[f"evt-{index}"]


@pytest.mark.serial
def test_two_503s_then_200_is_delivered_on_attempt_3_after_the_policy_gaps(
    stack: Stack, fake: FakeHubSpot
) -> None:
    # Given HubSpot answers 503 twice, then 200 (backoff base 0.5 s, jitter ±10 %)
    fake.fail_next(2, 503)
    stack.start_worker()
    job_id, _ = Producer(stack.settings).enqueue(valid_event())
    # When the job runs
    job = wait_state(stack, job_id, "delivered")
    # Then it took three attempts, and the gaps follow the policy
    assert job.attempts == 3
    # and the record speaks of the last attempt: its status, no error left from the 503s
    assert (job.lastAttempt, job.lastStatus, job.lastError) == (3, 200, None)
    posts = writes(fake.requests())
    assert [p["status"] for p in posts] == [503, 503, 200]
    gap1 = posts[1]["receivedAt"] - posts[0]["answeredAt"]
    gap2 = posts[2]["receivedAt"] - posts[1]["answeredAt"]
    assert 0.45 <= gap1 <= 0.55 + SLACK_S
    assert 0.9 <= gap2 <= 1.1 + SLACK_S
    # and a 503 is ambiguous, so each retry re-sent the event with PUT (no GET: the token
    # cannot read), which cannot make a second event
    assert [r["method"] for r in fake.requests()] == ["POST", "PUT", "PUT"]
    assert len(fake.events()) == 1


def test_429_with_retry_after_2_waits_at_least_2_seconds_without_using_an_attempt(
    stack: Stack, fake: FakeHubSpot
) -> None:
    fake.fail_next(
        1,
        429,
        headers={"Retry-After": "2"},
        body={
            "status": "error",
            "message": "You have reached your ten_secondly_rolling limit.",
            "errorType": "RATE_LIMIT",
            "policyName": "TEN_SECONDLY_ROLLING",
            "correlationId": "c-429",
        },
    )
    stack.start_worker()
    job_id, _ = Producer(stack.settings).enqueue(valid_event())
    job = wait_state(stack, job_id, "delivered")
    first, second = fake.requests()
    assert first["status"] == 429
    assert second["receivedAt"] - first["answeredAt"] >= 2.0
    assert job.attempts == 1  # the 429 did not count


def test_400_is_dead_lettered_after_one_attempt_with_hubspots_message(
    stack: Stack, fake: FakeHubSpot
) -> None:
    fake.fail_next(
        1,
        400,
        body={
            "status": "error",
            "message": "Property values were not valid",
            "category": "VALIDATION_ERROR",
            "correlationId": "corr-400",
        },
    )
    stack.start_worker()
    job_id, _ = Producer(stack.settings).enqueue(valid_event())
    job = wait_state(stack, job_id, "dead_lettered")
    assert len(fake.requests()) == 1
    entry = json.loads(stack.run_cli("dlq", "show", job.deadLetterId or "", "--json").stdout)
    assert entry["reason"] == "rejected"
    assert entry["httpStatus"] == 400
    assert entry["error"]["message"] == "Property values were not valid"
    assert entry["error"]["correlationId"] == "corr-400"
    assert entry["payload"]["externalEventId"] == "evt-1"
    assert [a["httpStatus"] for a in entry["attempts"]] == [400]


def test_an_invalid_raw_celery_message_is_dead_lettered_as_invalid_with_zero_posts(
    stack: Stack, fake: FakeHubSpot
) -> None:
    # Given a producer that bypasses eventq and sends an event with no eventName
    bad = valid_event()
    del bad["eventName"]
    stack.start_worker()
    send_raw(stack.settings, [{"jobId": "raw-job-1", "event": bad}])
    # Then the job is dead-lettered as invalid, naming the field, and nothing was POSTed
    job = wait_state(stack, "raw-job-1", "dead_lettered")
    entry = json.loads(stack.run_cli("dlq", "show", job.deadLetterId or "", "--json").stdout)
    assert entry["reason"] == "invalid"
    assert "eventName: Field required" in entry["error"]["message"]
    assert fake.requests() == []


def test_a_bare_event_sent_as_a_raw_message_is_delivered(stack: Stack, fake: FakeHubSpot) -> None:
    # Given a worker, When a plain Celery client sends an event with no envelope
    stack.start_worker()
    job_id = send_raw(stack.settings, [valid_event("bare")])
    # Then it is created once at HubSpot, and its job (the message's task id) reads delivered
    events = fake.wait_for_events(1, timeout_s=20)
    assert events[0]["body"]["externalEventId"] == "evt-bare"
    found = wait_state(stack, job_id, "delivered")
    assert found.attempts == 1
    assert found.objectId is not None
    assert len(writes(fake.requests())) == 1


def test_always_503_is_dead_lettered_as_exhausted_with_every_attempt_recorded(
    stack: Stack, fake: FakeHubSpot
) -> None:
    fake.set_failure_rate(1.0, 503)
    stack.start_worker()
    job_id, _ = Producer(stack.settings).enqueue(valid_event())
    job = wait_state(stack, job_id, "dead_lettered", timeout_s=40)
    entry = json.loads(stack.run_cli("dlq", "show", job.deadLetterId or "", "--json").stdout)
    assert entry["reason"] == "exhausted"
    posts = writes(fake.requests())
    assert len(posts) == 4  # EVENTQ_MAX_ATTEMPTS
    assert [a["httpStatus"] for a in entry["attempts"] if a["outcome"] != "waiting"] == [503] * 4


def test_a_connection_closed_after_create_is_re_sent_with_put_not_a_second_post(
    stack: Stack, fake: FakeHubSpot
) -> None:
    # Given HubSpot stores the event, then drops the connection before answering
    fake.close_after_create(1)
    stack.start_worker()
    job_id, _ = Producer(stack.settings).enqueue(valid_event())
    job = wait_state(stack, job_id, "delivered")
    events = fake.events()
    assert len(events) == 1
    assert job.objectId == events[0]["objectId"]
    assert [r["method"] for r in fake.requests()] == ["POST", "PUT"]


def test_a_worker_killed_mid_delivery_is_finished_by_another_exactly_once(
    stack: Stack, fake: FakeHubSpot
) -> None:
    # Given HubSpot takes 2 s to answer and a worker is sending the job
    fake.set_latency(ms=2000)
    first = stack.start_worker()
    job_id, _ = Producer(stack.settings).enqueue(valid_event())
    wait_for(fake.requests, 10, "the POST to arrive")
    # When that worker is killed outright, and another starts
    first.send_signal(signal.SIGKILL)
    first.wait(5)
    fake.set_latency(ms=0)
    stack.start_worker()
    # Then the job is delivered once: the redelivered message re-sends with PUT, not POST
    job = wait_state(stack, job_id, "delivered", timeout_s=40)
    events = fake.events()
    assert len(events) == 1
    assert job.objectId == events[0]["objectId"]
    assert [r["method"] for r in fake.requests()] == ["POST", "PUT"]


def test_replay_of_a_fixed_entry_is_delivered_and_dry_run_and_purge_behave(
    stack: Stack, fake: FakeHubSpot
) -> None:
    # Given two entries dead-lettered as invalid (sent raw, without an organizer)
    bad = valid_event("fix-me")
    del bad["eventOrganizer"]
    stack.start_worker()
    send_raw(stack.settings, [{"jobId": "raw-a", "event": bad}])
    send_raw(stack.settings, [{"jobId": "raw-b", "event": {**bad, "externalEventId": "other"}}])
    entry_a = wait_state(stack, "raw-a", "dead_lettered").deadLetterId or ""
    entry_b = wait_state(stack, "raw-b", "dead_lettered").deadLetterId or ""
    # When replayed unchanged, it stays, with the error shown
    unchanged = stack.run_cli("dlq", "replay", entry_a)
    assert unchanged.returncode == 1
    assert "eventOrganizer: Field required" in unchanged.stderr
    # A dry run with the fix changes nothing
    fix = json.dumps({"eventOrganizer": "Acme"})
    dry = stack.run_cli("dlq", "replay", entry_a, "--patch", fix, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run: 1 would_replay" in dry.stderr
    assert json.loads(stack.run_cli("dlq", "list", "--json").stdout)["entries"]
    assert fake.requests() == []
    # The real replay delivers it and removes the entry
    done = stack.run_cli("dlq", "replay", entry_a, "--patch", fix)
    assert done.returncode == 0, done.stderr
    job = wait_state(stack, "raw-a", "delivered")
    assert fake.events()[0]["body"]["eventOrganizer"] == "Acme"
    assert job.objectId == fake.events()[0]["objectId"]
    # and its status says the replay started a fresh budget while the numbering went on
    shown = json.loads(stack.run_cli("status", "raw-a", "--json").stdout)
    assert (shown["attempts"], shown["lastAttempt"], shown["lastStatus"]) == (1, 2, 200)
    assert shown["lastError"] is None
    # Purge removes the other
    assert stack.run_cli("dlq", "purge", entry_b).returncode == 0
    assert json.loads(stack.run_cli("dlq", "list", "--json").stdout)["entries"] == []
    assert "no dead-letter entries" in stack.run_cli("dlq", "list").stderr
    # And every one of those CLI actions is in the audit log, named by the OS user
    client = redis.Redis.from_url(stack.settings.redis_url)
    rows = client.xrange(Keys(stack.settings.key_prefix).audit)
    audit = [AuditEntry.model_validate_json(fields[b"entry"]) for _, fields in rows]
    assert [(a.action, a.ids, a.outcome, a.patched) for a in audit] == [
        ("replay", [entry_a], "invalid=1", False),
        ("dry_run", [entry_a], "would_replay=1", True),
        ("replay", [entry_a], "replayed=1", True),
        ("delete", [entry_b], "deleted=1", False),
    ]
    assert {(a.via, a.keyName) for a in audit} == {("cli", getpass.getuser())}


BAD_LINES = [
    (
        {k: v for k, v in valid_event("m1").items() if k != "externalAccountId"},
        "externalAccountId: Field required",
    ),
    (
        {k: v for k, v in valid_event("m2").items() if k != "externalEventId"},
        "externalEventId: Field required",
    ),
    ({k: v for k, v in valid_event("m3").items() if k != "eventName"}, "eventName: Field required"),
    (
        {k: v for k, v in valid_event("m4").items() if k != "eventOrganizer"},
        "eventOrganizer: Field required",
    ),
    (valid_event("t1", eventName=["x"]), "eventName: Input should be a valid string"),
    (
        valid_event("t2", eventCompleted="sometimes"),
        "eventCompleted: Input should be a valid boolean",
    ),
    (
        valid_event("n1", startDateTime="2027-01-01T10:00:00"),
        "startDateTime: has no time zone; add Z or +01:00, e.g. 2026-03-01T18:00:00Z",
    ),
    (valid_event("e1", externalEventId=""), "externalEventId: String should have at least 1"),
    (
        valid_event("u1", customProperties=[{"name": "a", "value": "b", "source": "NOPE"}]),
        "customProperties.0.source: not one of HubSpot's property sources",
    ),
]


def test_bad_cli_input_names_each_item_and_field_and_still_enqueues_the_good_ones(
    stack: Stack, fake: FakeHubSpot
) -> None:
    lines = [json.dumps(valid_event("good-1"))]
    lines += [json.dumps(event) for event, _ in BAD_LINES]
    lines += ["this is not json", json.dumps(valid_event("good-2"))]
    result = stack.run_cli("enqueue", "-", stdin="\n".join(lines))
    assert result.returncode == 1
    for number, (_, message) in enumerate(BAD_LINES, start=2):
        assert f"line {number}: " in result.stderr
        assert message in result.stderr, message
    assert f"line {len(lines) - 1}: not valid JSON" in result.stderr
    assert "2 enqueued (0 already queued), 10 rejected of 12 items" in result.stderr
    assert "Traceback" not in result.stderr
    stack.start_worker()
    events = fake.wait_for_events(2, timeout_s=20)
    assert sorted(e["body"]["externalEventId"] for e in events) == ["evt-good-1", "evt-good-2"]


def test_an_empty_file_is_rejected_with_a_clear_message(stack: Stack, tmp_path: object) -> None:
    empty = stack.tmp / "empty.jsonl"
    empty.write_text("")
    result = stack.run_cli("enqueue", str(empty))
    assert result.returncode == 1
    assert "input: the input is empty" in result.stderr


def test_the_token_never_appears_in_logs_messages_flower_args_or_the_dlq(
    stack: Stack, fake: FakeHubSpot, redis_client: object
) -> None:
    client = redis_lib.Redis.from_url(stack.settings.redis_url)
    # Given one job that is delivered and one dead-lettered (401), with DEBUG logs
    job_ok, _ = Producer(stack.settings).enqueue(valid_event("ok"))
    queued = client.lrange(stack.settings.queue, 0, -1)
    stack.start_worker(extra_env={"EVENTQ_LOG_LEVEL": "DEBUG"})
    wait_state(stack, job_ok, "delivered")
    fake.fail_next(1, 401)  # before the enqueue: the worker is already waiting for it
    job_401, _ = Producer(stack.settings).enqueue(valid_event("401"))
    wait_state(stack, job_401, "dead_lettered")
    # Then the message Flower would show carries only the summary
    assert queued
    message = json.loads(queued[0])
    assert message["headers"]["argsrepr"] == "acct-1/evt-ok 'Webinar ok' attempt 1"
    for raw in queued:
        assert TOKEN.encode() not in raw
    # and no log line, Redis key or DLQ entry holds the token
    assert TOKEN not in stack.log_text()
    for key in client.scan_iter(f"{stack.settings.key_prefix}:*", count=10_000):
        kind = client.type(key)
        dump = client.dump(key) or b""
        assert TOKEN.encode() not in dump, (key, kind)
    dlq = stack.run_cli("dlq", "list", "--json")
    assert TOKEN not in dlq.stdout
    assert "auth" in dlq.stdout
