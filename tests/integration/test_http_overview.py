"""`GET /v1/overview`: the numbers the admin page's first screen shows, read from a seeded Redis
by the same reader as `/metrics`."""

from __future__ import annotations

import asyncio
import time

import redis
import redis.asyncio as aioredis

from eventq.keys import Keys
from eventq.settings import Settings, settings_from_env
from fake_hubspot.control import free_port
from producers.enqueue import Producer
from tests.conftest import Stack, valid_event
from tests.integration.http_support import (
    ADMIN_KEY,
    KEY_ENV,
    Api,
    running_service,
    seed_dead_letter,
)
from worker.circuit_breaker import CircuitBreaker
from worker.rate_limit import RateLimiter, bucket_for_token

ORGANIZER = "eventOrganizer is not allowed here"


def open_breaker_and_pause_limiter(settings: Settings, until: float) -> None:
    """Open the breaker of the HubSpot base URL and pause the private app's bucket, as workers
    would after five 5xx answers and a daily 429."""

    async def write() -> None:
        client = aioredis.Redis.from_url(settings.redis_url)
        breaker = CircuitBreaker(client, prefix=settings.key_prefix, failures_to_open=5)
        for _ in range(5):
            await breaker.record_failure(settings.hubspot_base_url)
        limiter = RateLimiter.from_settings(client, settings)
        assert settings.hubspot_access_token is not None
        bucket = bucket_for_token(settings.hubspot_access_token.get_secret_value())
        await limiter.pause(bucket, until, "DAILY")
        await client.aclose()

    asyncio.run(write())


def test_the_overview_shows_depths_outcomes_limiter_breaker_and_dlq_groups(
    stack: Stack, service_settings: Settings, admin: Api, api: Api, redis_client: redis.Redis
) -> None:
    # Given two queued jobs, one waiting for a retry, four dead letters in three groups, an open
    # breaker and a paused bucket (no worker running)
    settings = service_settings
    keys = Keys(settings.key_prefix)
    producer = Producer(settings)
    for n in range(2):
        producer.enqueue(valid_event(n))
    redis_client.zadd(keys.schedule, {"some-job": time.time() + 60})
    for n in range(2):
        seed_dead_letter(
            settings, valid_event(n), reason="rejected", http_status=400, message=ORGANIZER
        )
    seed_dead_letter(settings, valid_event(3), reason="rejected", http_status=400, message="x")
    seed_dead_letter(settings, {"eventName": "y"})
    until = time.time() + 3600
    open_breaker_and_pause_limiter(settings, until)
    # When an admin asks for the overview
    body = admin.get("/v1/overview").json()
    # Then every number is the seeded one
    assert body["queues"] == {"live": 2, "bulk": 0, "retrySchedule": 1}
    assert body["deadLetters"]["total"] == 4
    assert body["deadLetters"]["byReason"] == {"rejected": 3, "invalid": 1}
    assert body["deadLetters"]["groups"][0] == {
        "reason": "rejected",
        "message": ORGANIZER,
        "count": 2,
    }
    assert len(body["deadLetters"]["groups"]) == 3
    assert len(body["minutes"]) == 60
    assert sum(m["deadLettered"] for m in body["minutes"][-2:]) == 4
    assert [b["state"] for b in body["breakers"]] == ["open"]
    assert body["breakers"][0]["target"] == settings.hubspot_base_url
    [bucket] = body["buckets"]
    assert bucket["label"] == "private app"
    assert bucket["pauseReason"] == "DAILY"
    assert abs(bucket["pausedUntil"] - until) < 1
    # and no token appears in it
    assert settings.hubspot_access_token is not None
    token = settings.hubspot_access_token.get_secret_value()
    assert token not in admin.get("/v1/overview").text
    # and a producer key may not read it
    assert api.get("/v1/overview").status_code == 403


def test_a_group_is_deleted_in_bulk_after_a_dry_run_with_one_audit_entry_each(
    stack: Stack, service_settings: Settings, admin: Api
) -> None:
    # Given three entries of one group and one of another
    settings = service_settings
    group = [
        seed_dead_letter(settings, valid_event(n), reason="rejected", message=ORGANIZER).id
        for n in range(3)
    ]
    other = seed_dead_letter(settings, valid_event(9), reason="rejected", message="other").id
    selection = {"filter": {"reason": "rejected", "message": ORGANIZER}}
    # When an admin previews deleting the group
    preview = admin.post("/v1/dead-letters/delete", json={**selection, "dryRun": True}).json()
    # Then the preview names the three and nothing is gone
    assert preview["counts"] == {"would_delete": 3}
    assert sorted(r["id"] for r in preview["results"]) == sorted(group)
    assert admin.get("/v1/overview").json()["deadLetters"]["total"] == 4
    # When the admin confirms
    done = admin.post("/v1/dead-letters/delete", json=selection).json()
    # Then exactly the group is gone, and its counts with it
    assert done["counts"] == {"deleted": 3}
    dead = admin.get("/v1/overview").json()["deadLetters"]
    assert dead["total"] == 1
    assert dead["groups"] == [{"reason": "rejected", "message": "other", "count": 1}]
    assert admin.get(f"/v1/dead-letters/{other}").status_code == 200
    # and the audit log has one entry per call, with every id
    audit = admin.get("/v1/audit").json()["entries"]
    assert [(e["action"], e["outcome"]) for e in audit[:2]] == [
        ("delete", "deleted=3"),
        ("dry_run", "would_delete=3"),
    ]
    assert sorted(audit[0]["ids"]) == sorted(group)
    # and a request naming both ids and a filter is refused, naming the problem
    both = admin.post("/v1/dead-letters/delete", json={**selection, "ids": group})
    assert both.status_code == 422
    assert "not both" in both.text


def test_eventq_dlq_recount_rebuilds_the_overview_counts_of_entries_stored_without_them(
    stack: Stack, service_settings: Settings, admin: Api, redis_client: redis.Redis
) -> None:
    # Given two entries whose counts were lost (as for a DLQ written before they were kept)
    settings = service_settings
    keys = Keys(settings.key_prefix)
    for n in range(2):
        seed_dead_letter(settings, valid_event(n), reason="rejected", message=ORGANIZER)
    redis_client.delete(keys.dlq_reasons, keys.dlq_groups)
    assert admin.get("/v1/overview").json()["deadLetters"]["byReason"] == {}
    # When an operator runs the recount
    done = stack.run_cli("dlq", "recount")
    # Then it reports them and the overview counts them again
    assert done.returncode == 0, done.stderr
    assert "rejected: 2" in done.stderr
    assert "2 entries in 1 groups counted" in done.stderr
    dead = admin.get("/v1/overview").json()["deadLetters"]
    assert dead["byReason"] == {"rejected": 2}
    assert dead["groups"] == [{"reason": "rejected", "message": ORGANIZER, "count": 2}]


def test_the_overview_answers_503_when_redis_is_down() -> None:
    # Given a service whose Redis and broker are a closed port
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings = settings_from_env(KEY_ENV, redis_url=dead)
    with running_service(settings) as base_url:
        # When an admin asks for the overview
        response = Api(base_url, ADMIN_KEY).get("/v1/overview")
    # Then it is the service's usual "unavailable" answer, without internals
    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"
    assert "Traceback" not in response.text
