"""Fixtures for the Redis-backed unit tests: a unique key prefix and clients that clean up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import uuid4

import pytest
import redis.asyncio

from tests.conftest import REDIS_URL


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid4().hex}"


@pytest.fixture
async def client(prefix: str) -> AsyncIterator[redis.asyncio.Redis]:
    conn = redis.asyncio.Redis.from_url(REDIS_URL)
    yield conn
    keys = [key async for key in conn.scan_iter(match=f"{prefix}:*", count=10_000)]
    if keys:
        await conn.delete(*keys)
    await conn.aclose()


@pytest.fixture
async def other_client() -> AsyncIterator[redis.asyncio.Redis]:
    # A second connection pool stands for another worker process.
    conn = redis.asyncio.Redis.from_url(REDIS_URL, decode_responses=True)
    yield conn
    await conn.aclose()
