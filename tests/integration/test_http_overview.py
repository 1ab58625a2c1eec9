"""`GET /v1/overview`: the numbers the admin page's first screen shows, read from a seeded Redis
by the same reader as `/metrics`."""

from __future__ import annotations

import asyncio
import time

import redis
import redis.asyncio as aioredis

from eventq.keys import Keys
from eventq.settings import Settings
from producers.enqueue import Producer
from tests.conftest import Stack, valid_event
from tests.integration.http_support import Api, seed_dead_letter
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
