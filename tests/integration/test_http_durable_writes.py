"""The HTTP service with durable writes on and no replica to confirm them: a retryable 503."""

from __future__ import annotations

import pytest
import redis

from tests.conftest import valid_event
from tests.integration.http_support import Api


@pytest.fixture
def service_env() -> dict[str, str]:
    # the test Redis has no replica, so no write can be confirmed
    return {"EVENTQ_REDIS_DURABLE_WRITES": "true", "EVENTQ_REDIS_DURABLE_TIMEOUT_MS": "100"}


def test_an_event_whose_write_no_replica_confirmed_gets_a_retryable_503_not_a_202(
    api: Api, redis_client: redis.Redis
) -> None:
    # Given a Redis without replicas (checked: otherwise this test would show nothing)
    assert redis_client.info("replication")["connected_slaves"] == 0
    # When a producer posts an event
    response = api.post("/v1/events", json=valid_event("unconfirmed"))
    # Then it is told to try again later, never that the event was accepted
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"]
    assert response.json()["error"] == "unavailable"
