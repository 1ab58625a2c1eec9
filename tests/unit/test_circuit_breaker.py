"""Tests of the Redis-backed circuit breaker against the real Redis (`real_redis`)."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import redis.asyncio

from worker.circuit_breaker import CircuitBreaker

TARGET = "https://api.hubapi.com"
COOLDOWN_S = 0.3
FAILURES = 3


@pytest.fixture
def breaker(real_redis: redis.asyncio.Redis, key_prefix: str) -> CircuitBreaker:
    return CircuitBreaker(
        real_redis, prefix=key_prefix, failures_to_open=FAILURES, cooldown_s=COOLDOWN_S
    )


@pytest.fixture
def other_breaker(other_real_redis: redis.asyncio.Redis, key_prefix: str) -> CircuitBreaker:
    return CircuitBreaker(
        other_real_redis, prefix=key_prefix, failures_to_open=FAILURES, cooldown_s=COOLDOWN_S
    )


@pytest.fixture
def breaker_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="eventq.breaker")
    return caplog


async def open_breaker(breaker: CircuitBreaker) -> None:
    for _ in range(FAILURES):
        await breaker.record_failure(TARGET)


async def wait_for_cooldown() -> None:
    await asyncio.sleep(COOLDOWN_S + 0.05)


async def test_breaker_opens_after_consecutive_failures_and_denies_while_open(
    breaker: CircuitBreaker, other_breaker: CircuitBreaker, breaker_logs: pytest.LogCaptureFixture
) -> None:
    # Given a closed breaker that has seen one failure fewer than the threshold
    for _ in range(FAILURES - 1):
        await breaker.record_failure(TARGET)
    assert (await breaker.allow(TARGET)).allowed

    # When one more failure is recorded
    before = time.time()
    await breaker.record_failure(TARGET)

    # Then every worker is denied until the cooldown has passed
    decision = await other_breaker.allow(TARGET)
    assert not decision.allowed
    assert (decision.state, decision.probe) == ("open", False)
    assert decision.retry_at == pytest.approx(before + COOLDOWN_S, abs=0.05)
    assert await other_breaker.state(TARGET) == "open"
    # And the opening was logged once, as a warning
    opened = [r for r in breaker_logs.records if "open for" in r.getMessage()]
    assert [r.levelno for r in opened] == [logging.WARNING]


async def test_success_while_closed_resets_the_failure_count(breaker: CircuitBreaker) -> None:
    # Given failures one short of opening, then a success
    for _ in range(FAILURES - 1):
        await breaker.record_failure(TARGET)
    await breaker.record_success(TARGET)

    # When as many failures follow again
    for _ in range(FAILURES - 1):
        await breaker.record_failure(TARGET)

    # Then the breaker is still closed
    assert await breaker.state(TARGET) == "closed"
    assert (await breaker.allow(TARGET)).allowed


async def test_exactly_one_of_many_concurrent_callers_gets_the_probe_after_cooldown(
    breaker: CircuitBreaker, other_breaker: CircuitBreaker, breaker_logs: pytest.LogCaptureFixture
) -> None:
    # Given an open breaker whose cooldown has passed
    await open_breaker(breaker)
    await wait_for_cooldown()

    # When 60 callers on two workers ask at once
    calls = [b.allow(TARGET) for b in (breaker, other_breaker) for _ in range(30)]
    decisions = await asyncio.gather(*calls)

    # Then exactly one is allowed, as the probe, and the rest wait in half-open
    allowed = [d for d in decisions if d.allowed]
    assert len(allowed) == 1
    assert allowed[0].probe
    assert allowed[0].state == "half_open"
    denied = [d for d in decisions if not d.allowed]
    assert {(d.state, d.probe) for d in denied} == {("half_open", False)}
    # And the transition to half-open was logged once
    half_open = [r for r in breaker_logs.records if "half-open" in r.getMessage()]
    assert [r.levelno for r in half_open] == [logging.INFO]


async def test_probe_success_closes_the_breaker(
    breaker: CircuitBreaker, other_breaker: CircuitBreaker, breaker_logs: pytest.LogCaptureFixture
) -> None:
    # Given a worker holding the half-open probe
    await open_breaker(breaker)
    await wait_for_cooldown()
    assert (await breaker.allow(TARGET)).probe

    # When the probe succeeds
    await breaker.record_success(TARGET)

    # Then every worker may send again, and the closing was logged once
    decision = await other_breaker.allow(TARGET)
    assert (decision.allowed, decision.state, decision.probe) == (True, "closed", False)
    closed = [r for r in breaker_logs.records if "closed for" in r.getMessage()]
    assert [r.levelno for r in closed] == [logging.INFO]


async def test_probe_failure_reopens_the_breaker_for_another_cooldown(
    breaker: CircuitBreaker, other_breaker: CircuitBreaker
) -> None:
    # Given a worker holding the half-open probe
    await open_breaker(breaker)
    await wait_for_cooldown()
    assert (await breaker.allow(TARGET)).probe

    # When the probe fails
    before = time.time()
    await breaker.record_failure(TARGET)

    # Then the breaker is open again for a whole cooldown
    decision = await other_breaker.allow(TARGET)
    assert (decision.allowed, decision.state) == (False, "open")
    assert decision.retry_at == pytest.approx(before + COOLDOWN_S, abs=0.05)


async def test_a_dead_probe_expires_so_another_caller_can_probe(
    breaker: CircuitBreaker, other_breaker: CircuitBreaker
) -> None:
    # Given a probe whose holder died without recording an outcome
    await open_breaker(breaker)
    await wait_for_cooldown()
    assert (await breaker.allow(TARGET)).probe
    assert not (await other_breaker.allow(TARGET)).allowed

    # When the probe's permission has lapsed
    await wait_for_cooldown()

    # Then another worker gets the probe
    decision = await other_breaker.allow(TARGET)
    assert (decision.allowed, decision.probe, decision.state) == (True, True, "half_open")


async def test_stragglers_neither_extend_nor_end_an_open_breaker(
    breaker: CircuitBreaker,
) -> None:
    # Given an open breaker
    await open_breaker(breaker)
    retry_at = (await breaker.allow(TARGET)).retry_at

    # When late answers to requests sent before it opened come in
    await breaker.record_failure(TARGET)
    await breaker.record_success(TARGET)

    # Then it stays open with the same cooldown
    decision = await breaker.allow(TARGET)
    assert (decision.allowed, decision.state, decision.retry_at) == (False, "open", retry_at)


async def test_the_key_hashes_the_target_and_expires(
    breaker: CircuitBreaker, real_redis: redis.asyncio.Redis, key_prefix: str
) -> None:
    # Given a target with a recorded failure
    await breaker.record_failure(TARGET)

    # When the keys are listed
    keys = [
        key.decode() async for key in real_redis.scan_iter(match=f"{key_prefix}:*", count=10_000)
    ]

    # Then there is one breaker key, named by a hash of the URL, with a TTL
    assert len(keys) == 1
    assert keys[0].startswith(f"{key_prefix}:breaker:")
    assert len(keys[0].rsplit(":", 1)[1]) == 12
    assert "hubapi" not in keys[0]
    assert await real_redis.pttl(keys[0]) > 0
    # And a different base URL has its own breaker
    assert await breaker.state("https://api.hubapi.eu") == "closed"
