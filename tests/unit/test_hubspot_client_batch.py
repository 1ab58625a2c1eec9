"""HubSpotClient.upsert_batch against the fake HubSpot in process: each answer mapped once to
BatchAnswer, HttpFailure or NetworkFailure, and the answer matched back to its inputs."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from fake_hubspot import FakeConfig, create_app
from fake_hubspot.app import STATE
from fake_hubspot.config import BatchConfig
from fake_hubspot.state import FakeState
from worker.attempts import BatchAnswer, HttpFailure, NetworkFailure
from worker.batch_results import BatchTooLarge, Failed, Matched, is_batch_too_large, match_results
from worker.hubspot_client import HubSpotClient, new_session

TOKEN = "client-token"


def event(n: int) -> dict[str, Any]:
    return {
        "externalAccountId": "acct-1",
        "externalEventId": f"ev-{n}",
        "eventName": f"Event {n}",
        "eventOrganizer": "Acme",
        "startDateTime": "2030-05-01T12:00:00+02:00",
        "customProperties": [{"name": "campaign", "value": "spring"}],
    }


@pytest.fixture
async def served() -> AsyncIterator[tuple[HubSpotClient, FakeState]]:
    config = FakeConfig(tokens=(TOKEN,), batch=BatchConfig(max_size=10, shuffle=True))
    app = create_app(config)
    async with TestServer(app) as server:
        session = new_session(connect_timeout_s=2, read_timeout_s=2, max_connections=4)
        async with session:
            yield HubSpotClient(session, str(server.make_url(""))), app[STATE]


async def test_a_shuffled_batch_answer_gives_each_input_its_own_events_id(
    served: tuple[HubSpotClient, FakeState],
) -> None:
    client, fake = served
    # Given ten events, answered in random order
    inputs = [event(n) for n in range(10)]
    # When they are upserted as one batch
    answer = await client.upsert_batch(inputs, TOKEN)
    # Then the answer is a 200 BatchAnswer, and matching gives each input the id the fake stored
    assert isinstance(answer, BatchAnswer)
    assert (answer.status, answer.errors, answer.batch_status) == (200, (), "COMPLETE")
    stored = {record["externalEventId"]: record["objectId"] for record in fake.events.records}
    expected = [Matched(stored[body["externalEventId"]]) for body in inputs]
    assert match_results(inputs, answer) == expected


async def test_a_refused_input_comes_back_as_a_batch_error_that_fails_that_input_only(
    served: tuple[HubSpotClient, FakeState],
) -> None:
    client, fake = served
    fake.faults.refuse("ev-2", "Event ev-2 is refused")
    inputs = [event(n) for n in range(4)]
    answer = await client.upsert_batch(inputs, TOKEN)
    assert isinstance(answer, BatchAnswer)
    assert (answer.status, answer.num_errors) == (207, 1)
    [error] = answer.errors
    assert error.message == "Event ev-2 is refused"
    assert error.category == "VALIDATION_ERROR"
    assert error.context["externalEventId"] == ("ev-2",)
    assert error.details[0]["in"] == "externalEventId"
    outcomes = match_results(inputs, answer)
    assert outcomes[2] == Failed(error)
    assert [type(o) for o in outcomes] == [Matched, Matched, Failed, Matched]


async def test_a_batch_over_the_limit_is_an_http_failure_that_states_the_limit(
    served: tuple[HubSpotClient, FakeState],
) -> None:
    client, _ = served
    answer = await client.upsert_batch([event(n) for n in range(11)], TOKEN)
    assert isinstance(answer, HttpFailure)
    assert answer.status == 400
    assert is_batch_too_large(answer) == BatchTooLarge(10)


async def test_whole_batch_failures_are_http_or_network_failures(
    served: tuple[HubSpotClient, FakeState],
) -> None:
    client, fake = served
    inputs = [event(n) for n in range(3)]
    fake.faults.set_failure_rate(1.0, 503)
    failed = await client.upsert_batch(inputs, TOKEN)
    assert isinstance(failed, HttpFailure)
    assert failed.status == 503
    assert is_batch_too_large(failed) is None
    fake.faults.set_failure_rate(0.0, 503)
    fake.limiter.configure(None, None, "UTC")
    fake.faults.close_next = 1
    dropped = await client.upsert_batch(inputs, TOKEN)
    assert isinstance(dropped, NetworkFailure)
    assert (dropped.kind, dropped.sent) == ("disconnected", True)
    assert len(fake.events) == 3  # stored before the drop; a re-send updates them
    unauthorised = await client.upsert_batch(inputs, "not-a-token")
    assert isinstance(unauthorised, HttpFailure)
    assert unauthorised.status == 401


async def test_a_200_answer_with_errors_and_no_pointer_leaves_the_refused_input_unknown(
    served: tuple[HubSpotClient, FakeState],
) -> None:
    client, fake = served
    fake.batch = dataclasses.replace(fake.batch, error_status=200, error_pointer="none")
    fake.faults.refuse("ev-1", "refused")
    inputs = [event(n) for n in range(3)]
    answer = await client.upsert_batch(inputs, TOKEN)
    assert isinstance(answer, BatchAnswer)
    assert (answer.status, answer.num_errors) == (200, 1)
    outcomes = match_results(inputs, answer)
    assert [type(o).__name__ for o in outcomes] == ["Matched", "Unknown", "Matched"]
