"""The real Redis for the unit tests of Redis-backed pieces (limiter, breaker, stores, OAuth).

These tests talk to the real Redis, named as such: `real_redis` and `other_real_redis`, on the
shared `key_prefix` (tests/conftest.py), which marks them `redis`. Every other unit test needs no
service: `pytest -m "not redis" tests/unit` runs without Redis.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio


@pytest.fixture
async def real_redis(real_redis_url: str, key_prefix: str) -> AsyncIterator[redis.asyncio.Redis]:
    """An asyncio client of the real Redis (bytes replies); `key_prefix`'s keys go afterwards."""
    conn = redis.asyncio.Redis.from_url(real_redis_url)
    yield conn
    await conn.aclose()


@pytest.fixture
async def other_real_redis(real_redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """A second connection pool to the real Redis (str replies): another worker process."""
    conn = redis.asyncio.Redis.from_url(real_redis_url, decode_responses=True)
    yield conn
    await conn.aclose()
