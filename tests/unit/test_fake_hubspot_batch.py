"""The fake HubSpot's batch upsert (`POST .../events/upsert`) over loopback: a real subprocess."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from fake_hubspot import FakeHubSpot, fake_subprocess
from fake_hubspot.server import build_parser, config_from_args
from tests.unit.test_fake_hubspot import (
    OTHER_TOKEN,
    TOKEN,
    Answer,
    assert_hubspot_error,
    call,
    create,
    event_body,
    spec_validator,
    upsert,
)

BATCH = "/marketing/v3/marketing-events/events/upsert"


@pytest.fixture(scope="module")
def fake_server() -> Iterator[str]:
    with fake_subprocess(args=["--token", TOKEN, "--token", OTHER_TOKEN]) as (_, base_url):
        yield base_url


@pytest.fixture
def fake(fake_server: str) -> FakeHubSpot:
    control = FakeHubSpot(fake_server)
    control.reset()
    return control


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def batch(
    http: aiohttp.ClientSession,
    fake: FakeHubSpot,
    inputs: list[Any],
    *,
    token: str = TOKEN,
    timeout_s: float = 5.0,
) -> Answer:
    body = {"inputs": inputs}
    return await call(http, fake, "POST", BATCH, token=token, json_body=body, timeout_s=timeout_s)


def named(count: int, prefix: str = "ev") -> list[dict[str, Any]]:
    return [event_body(f"{prefix}-{n}", eventName=f"Event {n}") for n in range(count)]


def assert_batch_shape(answer: Any) -> None:
    validator = spec_validator("BatchResponseMarketingEventPublicDefaultResponse")
    assert list(validator.iter_errors(answer)) == []
    for result in answer["results"]:
        assert "externalEventId" not in result
        assert "externalAccountId" not in result


async def test_a_batch_upserts_each_input_answering_the_specs_batch_shape(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    # Given three new events
    inputs = named(3)
    # When they are upserted in one batch
    status, _, answer = await batch(http, fake, inputs)
    # Then each is created, and the answer is the spec's batch answer without external ids
    assert status == 200
    assert_batch_shape(answer)
    assert answer["status"] == "COMPLETE"
    assert "errors" not in answer
    events = fake.events()
    assert [e["externalEventId"] for e in events] == ["ev-0", "ev-1", "ev-2"]
    by_name = {result["eventName"]: result["id"] for result in answer["results"]}
    assert by_name == {e["body"]["eventName"]: e["objectId"] for e in events}
    # and the same batch again, one input renamed, updates them: no new event
    inputs[1]["eventName"] = "Renamed"
    status, _, again = await batch(http, fake, inputs)
    assert status == 200
    assert len(fake.events()) == 3
    assert {r["id"] for r in again["results"]} == {e["objectId"] for e in events}
    assert fake.events()[1]["body"]["eventName"] == "Renamed"
    stats = fake.stats()
    assert (stats["batch_upserts"], stats["batch_inputs"], stats["creates"]) == (2, 6, 0)


async def test_a_batch_updates_events_made_by_post_or_put_and_only_its_apps(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    # Given an event created by POST and one by PUT
    _, _, created = await create(http, fake, event_body("ev-0"))
    _, _, put = await upsert(http, fake, event_body("ev-1"))
    # When a batch names both (and another app's batch names the first)
    _, _, answer = await batch(http, fake, named(2))
    await batch(http, fake, named(1), token=OTHER_TOKEN)
    # Then the first app's two events were updated, the other app made its own
    ids = sorted(result["id"] for result in answer["results"])
    assert ids == sorted([created["objectId"], put["id"]])
    assert len(fake.events()) == 3


async def test_the_same_event_twice_in_a_batch_is_one_event_with_the_last_body(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    first, second = event_body("ev-1"), event_body("ev-1", eventName="Second")
    status, _, answer = await batch(http, fake, [first, second])
    assert status == 200
    [event] = fake.events()
    assert event["body"]["eventName"] == "Second"
    assert [r["id"] for r in answer["results"]] == [event["objectId"]] * 2


async def test_a_batch_takes_one_rate_limit_slot_however_many_inputs(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    # Given a limit of 2 requests per 10 s
    fake.set_rate_limit(2, 10_000)
    # When three batches of 50 are sent
    first = await batch(http, fake, named(50, "a"))
    second = await batch(http, fake, named(50, "b"))
    third = await batch(http, fake, named(50, "c"))
    # Then two are answered (one slot each) and the third is a 429 that stored nothing
    assert [first[0], second[0], third[0]] == [200, 200, 429]
    assert first[1]["X-HubSpot-RateLimit-Remaining"] == "1"
    assert second[1]["X-HubSpot-RateLimit-Remaining"] == "0"
    assert len(fake.events()) == 100


async def test_an_invalid_input_is_a_standard_error_naming_it_while_the_others_are_upserted(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    # Given a batch whose middle input has a date the spec refuses
    inputs = named(3)
    inputs[1]["startDateTime"] = "tomorrow"
    # When it is sent
    status, _, answer = await batch(http, fake, inputs)
    # Then the answer is 207 with one StandardError naming that input by its external ids
    assert status == 207
    assert_batch_shape(answer)
    assert answer["numErrors"] == 1
    [error] = answer["errors"]
    assert list(spec_validator("StandardError").iter_errors(error)) == []
    assert error["category"] == "VALIDATION_ERROR"
    assert error["context"] == {"externalAccountId": ["acct-1"], "externalEventId": ["ev-1"]}
    assert [d["in"] for d in error["errors"]] == ["startDateTime"]
    assert "startDateTime" in error["message"]
    # and the other two were upserted
    assert [e["externalEventId"] for e in fake.events()] == ["ev-0", "ev-2"]
    assert len(answer["results"]) == 2


async def test_a_batch_with_errors_can_answer_200_and_name_inputs_by_index_or_not_at_all(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    inputs = named(2)
    inputs[1]["eventName"] = 7
    fake.configure_batch(error_status=200, error_pointer="index")
    status, _, answer = await batch(http, fake, inputs)
    assert status == 200
    [error] = answer["errors"]
    assert error["context"] == {}
    assert [d["in"] for d in error["errors"]] == ["inputs[1].eventName"]
    settings = fake.configure_batch(error_pointer="none")
    assert settings["error_status"] == 200  # left unchanged
    _, _, answer = await batch(http, fake, inputs)
    [error] = answer["errors"]
    assert (error["context"], [d["in"] for d in error["errors"]]) == ({}, ["eventName"])


async def test_a_refused_event_is_an_error_in_a_batch_and_a_400_alone(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    # Given the fake refuses event ev-1 with a message
    fake.refuse_event("ev-1", "Only Marketing Events created by the same app can be updated")
    # When a batch holds it, then it is the one error and the others are upserted
    status, _, answer = await batch(http, fake, named(3))
    assert status == 207
    [error] = answer["errors"]
    assert error["message"] == "Only Marketing Events created by the same app can be updated"
    assert error["context"]["externalEventId"] == ["ev-1"]
    assert len(fake.events()) == 2
    # and sent alone by POST or PUT it is a 400 with the same message
    for send in (create, upsert):
        status, _, alone = await send(http, fake, event_body("ev-1"))
        assert status == 400
        assert_hubspot_error(alone, "VALIDATION_ERROR")
        assert alone["message"] == error["message"]
    # and once accepted again, it is upserted
    fake.accept_event("ev-1")
    assert (await upsert(http, fake, event_body("ev-1")))[0] == 200
    assert len(fake.events()) == 3


async def test_a_batch_over_the_maximum_answers_400_naming_the_limit_and_stores_nothing(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    # Given the default maximum of 100 inputs
    status, _, answer = await batch(http, fake, named(101))
    # Then 101 inputs are refused whole, in HubSpot's batch wording, and nothing is stored
    assert status == 400
    assert_hubspot_error(answer, "VALIDATION_ERROR")
    assert list(spec_validator("Error").iter_errors(answer)) == []
    assert "maximum number of inputs supported in a batch request is 100" in answer["message"]
    assert fake.events() == []
    # and a maximum of 3 refuses 4 but takes 3
    fake.configure_batch(max_size=3)
    status, _, answer = await batch(http, fake, named(4))
    assert status == 400
    assert "is 3." in answer["message"]
    assert (await batch(http, fake, named(3)))[0] == 200


async def test_a_request_that_is_not_a_batch_answers_400_naming_inputs(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    for body in ({}, {"inputs": 5}, [event_body()]):
        status, _, answer = await call(http, fake, "POST", BATCH, json_body=body)
        assert status == 400, body
        assert answer["errors"][0]["in"] == "inputs"
    status, _, answer = await call(http, fake, "POST", BATCH, data=b"{not json")
    assert status == 400
    assert fake.events() == []


async def test_an_empty_batch_answers_200_with_no_results(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    status, _, answer = await batch(http, fake, [])
    assert (status, answer["results"]) == (200, [])


async def test_injected_failures_and_hangs_apply_to_a_batch_before_it_is_stored(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    fake.fail_next(1, 503)
    assert (await batch(http, fake, named(3)))[0] == 503
    fake.set_failure_rate(1.0, 502)
    assert (await batch(http, fake, named(3)))[0] == 502
    fake.set_failure_rate(0.0)
    fake.hang(1)
    with pytest.raises(asyncio.TimeoutError):
        await batch(http, fake, named(3), timeout_s=0.3)
    assert fake.events() == []
    fake.release_hung()


async def test_a_dropped_connection_after_storing_a_batch_keeps_every_input(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    # Given the next write is dropped after it is stored
    fake.close_after_create(1)
    # When a batch is sent, then the client sees a disconnect (a POST is not re-sent)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await batch(http, fake, named(3))
    # and all three events exist; sending the batch again creates none
    assert len(fake.events()) == 3
    assert (await batch(http, fake, named(3)))[0] == 200
    assert len(fake.events()) == 3
    assert [r["closed"] for r in fake.requests()] == [True, False]


async def test_shuffled_results_come_in_another_order_with_the_same_events(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    fake.configure_batch(shuffle=True)
    inputs = named(40)
    _, _, answer = await batch(http, fake, inputs)
    names = [result["eventName"] for result in answer["results"]]
    # the chance of 40 results shuffled back into their own order is 1 in 40!
    assert names != [body["eventName"] for body in inputs]
    assert sorted(names) == sorted(body["eventName"] for body in inputs)
    assert fake.stats()["batch"]["shuffle"] is True


def test_the_command_line_sets_the_batch_behaviour() -> None:
    args = build_parser().parse_args(
        [
            "--max-batch-size",
            "10",
            "--batch-error-status",
            "200",
            "--batch-error-pointer",
            "index",
            "--shuffle-batch-results",
        ]
    )
    settings = config_from_args(args).batch
    assert (settings.max_size, settings.error_status) == (10, 200)
    assert (settings.error_pointer, settings.shuffle) == ("index", True)
    default = config_from_args(build_parser().parse_args([])).batch
    assert (default.max_size, default.error_status, default.shuffle) == (100, 207, False)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--batch-error-status", "500"])
