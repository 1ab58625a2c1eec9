"""BatchingRedis against a real Redis: replies, errors, transactions and scripts per caller."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.exceptions import ResponseError

from worker.redis_batching import BatchingRedis


@pytest.fixture
async def client(real_redis_url: str, key_prefix: str) -> AsyncIterator[tuple[BatchingRedis, str]]:
    batching = BatchingRedis.from_url(real_redis_url, max_connections=8)
    try:
        yield batching, key_prefix
    finally:
        await batching.aclose()


async def test_concurrent_commands_each_get_their_own_reply(
    client: tuple[BatchingRedis, str],
) -> None:
    batching, prefix = client

    async def one(n: int) -> tuple[int, bytes | None, int]:
        await batching.set(f"{prefix}:k{n}", f"v{n}")
        value = await batching.get(f"{prefix}:k{n}")
        count = await batching.incr(f"{prefix}:counter")
        return n, value, count

    results = await asyncio.gather(*(one(n) for n in range(300)))
    assert all(value == f"v{n}".encode() for n, value, _ in results)
    assert sorted(count for _, _, count in results) == list(range(1, 301))


async def test_an_error_reaches_only_the_command_that_caused_it(
    client: tuple[BatchingRedis, str],
) -> None:
    batching, prefix = client
    await batching.set(f"{prefix}:text", "not a number")
    good, bad = await asyncio.gather(
        batching.incr(f"{prefix}:number"),
        batching.incr(f"{prefix}:text"),
        return_exceptions=True,
    )
    assert good == 1
    assert isinstance(bad, ResponseError)


async def test_a_transaction_stays_one_atomic_block_with_parsed_replies(
    client: tuple[BatchingRedis, str],
) -> None:
    batching, prefix = client

    async def transaction(n: int) -> list[object]:
        async with batching.pipeline(transaction=True) as pipe:
            pipe.hset(f"{prefix}:h{n}", mapping={"a": n, "b": "x"})
            pipe.hgetall(f"{prefix}:h{n}")
            pipe.incr(f"{prefix}:tx")
            pipe.expire(f"{prefix}:h{n}", 60)
            replies: list[object] = await pipe.execute()
            return replies

    results = await asyncio.gather(*(transaction(n) for n in range(50)))
    for n, (written, fields, _, expired) in enumerate(results):
        assert written == 2
        assert fields == {b"a": str(n).encode(), b"b": b"x"}
        assert expired is True
    assert sorted(r[2] for r in results) == list(range(1, 51))  # type: ignore[type-var]


async def test_a_failing_command_in_a_transaction_raises_for_that_caller_only(
    client: tuple[BatchingRedis, str],
) -> None:
    batching, prefix = client
    await batching.set(f"{prefix}:text", "abc")

    async def failing() -> None:
        async with batching.pipeline(transaction=True) as pipe:
            pipe.incr(f"{prefix}:text")
            pipe.set(f"{prefix}:after", "1")
            await pipe.execute()

    outcome, other = await asyncio.gather(
        failing(), batching.incr(f"{prefix}:n"), return_exceptions=True
    )
    assert isinstance(outcome, ResponseError)
    assert other == 1
    assert await batching.get(f"{prefix}:after") == b"1"  # Redis ran the rest of the block


async def test_a_script_unknown_to_the_server_is_loaded_and_run(
    client: tuple[BatchingRedis, str],
) -> None:
    batching, prefix = client
    script = batching.register_script(
        f"-- {uuid.uuid4().hex}\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])"
    )
    replies = await asyncio.gather(*(script([f"{prefix}:s"], [2]) for _ in range(20)))
    assert sorted(replies) == list(range(2, 41, 2))
