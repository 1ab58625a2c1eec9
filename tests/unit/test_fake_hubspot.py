"""The fake HubSpot, end to end over loopback: a real subprocess (and one in-process server)."""

from __future__ import annotations

import asyncio
import json
import shlex
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from jsonschema import Draft7Validator

from fake_hubspot import FakeConfig, FakeHubSpot, RateLimit, create_app, fake_subprocess
from fake_hubspot.config import READ_SCOPE, WRITE_SCOPE, RefreshGrant
from fake_hubspot.control import FakeControlError, max_in_any_window
from fake_hubspot.server import build_parser, config_from_args
from fake_hubspot.validator import resolved_schema

TOKEN = "test-token-1"
OTHER_TOKEN = "test-token-2"
EVENTS = "/marketing/v3/marketing-events/events"
CLIENT = {"client_id": "fake-client-id", "client_secret": "fake-client-secret"}

Answer = tuple[int, dict[str, str], Any]


def event_body(event_id: str = "ev-1", account: str = "acct-1", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "externalAccountId": account,
        "externalEventId": event_id,
        "eventName": "Launch webinar",
        "eventOrganizer": "Acme",
        "eventType": "WEBINAR",
        "startDateTime": "2030-05-01T10:00:00Z",
        "endDateTime": "2030-05-01T11:30:00.000+02:00",
        "customProperties": [{"name": "campaign", "value": "spring"}],
    }
    body.update(extra)
    return body


def spec_validator(name: str) -> Draft7Validator:
    return Draft7Validator(resolved_schema(name), format_checker=Draft7Validator.FORMAT_CHECKER)


@pytest.fixture(scope="module")
def fake_server() -> Iterator[str]:
    # these tokens may read as well as write, so the GET route can be exercised with them
    args = [
        "--token",
        TOKEN,
        "--token",
        OTHER_TOKEN,
        "--token-scopes",
        f"{READ_SCOPE},{WRITE_SCOPE}",
    ]
    with fake_subprocess(args=args) as (_, base_url):
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


async def call(
    http: aiohttp.ClientSession,
    fake: FakeHubSpot,
    method: str,
    path: str,
    *,
    token: str | None = TOKEN,
    json_body: Any = None,
    data: Any = None,
    timeout_s: float = 5.0,
) -> Answer:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(
        method,
        fake.base_url + path,
        json=json_body,
        data=data,
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=timeout_s),
    ) as response:
        text = await response.text()
        payload = json.loads(text) if text else None
        return response.status, dict(response.headers), payload


async def create(
    http: aiohttp.ClientSession,
    fake: FakeHubSpot,
    body: Any = None,
    token: str | None = TOKEN,
    timeout_s: float = 5.0,
) -> Answer:
    body = event_body() if body is None else body
    return await call(http, fake, "POST", EVENTS, token=token, json_body=body, timeout_s=timeout_s)


async def upsert(
    http: aiohttp.ClientSession, fake: FakeHubSpot, body: Any = None, token: str | None = TOKEN
) -> Answer:
    body = event_body() if body is None else body
    path = f"{EVENTS}/{body.get('externalEventId', 'x')}"
    return await call(http, fake, "PUT", path, token=token, json_body=body)


async def read(
    http: aiohttp.ClientSession,
    fake: FakeHubSpot,
    event_id: str = "ev-1",
    account: str | None = "acct-1",
    token: str | None = TOKEN,
) -> Answer:
    query = "" if account is None else f"?externalAccountId={account}"
    return await call(http, fake, "GET", f"{EVENTS}/{event_id}{query}", token=token)


async def refresh(http: aiohttp.ClientSession, fake: FakeHubSpot, **form: str) -> Answer:
    fields = {"grant_type": "refresh_token", **CLIENT, **form}
    return await call(http, fake, "POST", "/oauth/v1/token", token=None, data=fields)


async def access_token(
    http: aiohttp.ClientSession, fake: FakeHubSpot, refresh_token: str, portal_id: int, **kw: Any
) -> str:
    fake.configure_oauth(refresh_tokens={refresh_token: portal_id}, **kw)
    status, _, body = await refresh(http, fake, refresh_token=refresh_token)
    assert status == 200, body
    return str(body["access_token"])


def assert_hubspot_error(body: Any, category: str) -> None:
    assert body["status"] == "error"
    assert body["category"] == category
    assert isinstance(body["message"], str)
    assert body["message"]
    uuid.UUID(body["correlationId"])


async def test_a_valid_create_returns_200_with_an_object_id_matching_the_spec(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    status, headers, body = await create(http, fake)
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert list(spec_validator("MarketingEventDefaultResponse").iter_errors(body)) == []
    assert body["objectId"].isdigit()
    assert body["eventName"] == "Launch webinar"
    assert body["customProperties"][0]["name"] == "campaign"
    _, _, second = await create(http, fake, event_body("ev-2"))
    assert int(second["objectId"]) > int(body["objectId"])
    events = fake.events()
    assert [e["objectId"] for e in events] == [body["objectId"], second["objectId"]]
    assert events[0]["body"] == event_body()
    assert events[0]["identity"] == "app:app-1"


async def test_an_invalid_body_answers_400_naming_every_bad_field(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    body = event_body(startDateTime="2030-13-01T10:00:00Z", eventCancelled="no")
    del body["eventName"]
    body["customProperties"] = [{"name": "campaign", "value": 3, "source": "NOT_A_SOURCE"}]
    status, _, answer = await create(http, fake, body)
    assert status == 400
    assert_hubspot_error(answer, "VALIDATION_ERROR")
    assert list(spec_validator("Error").iter_errors(answer)) == []
    fields = {error["in"] for error in answer["errors"]}
    assert fields == {
        "eventName",
        "eventCancelled",
        "startDateTime",
        "customProperties[0].value",
        "customProperties[0].source",
    }
    assert fake.events() == []


async def test_a_body_that_is_not_json_answers_400(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    async with http.post(fake.base_url + EVENTS, data=b"{not json", headers=headers) as response:
        assert response.status == 400
        answer = await response.json()
    assert_hubspot_error(answer, "VALIDATION_ERROR")
    assert answer["errors"][0]["in"] == "body"
    assert fake.requests()[-1]["body"] is None


async def test_a_missing_or_unknown_token_answers_401_and_creates_nothing(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    for token in (None, "not-a-token"):
        status, _, answer = await create(http, fake, token=token)
        assert status == 401
        assert_hubspot_error(answer, "INVALID_AUTHENTICATION")
        assert answer["message"].startswith("Authentication credentials not found.")
    assert fake.events() == []
    assert fake.stats()["by_status"] == {"401": 2}


async def test_get_returns_the_created_event_only_to_its_creator_and_404_otherwise(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    _, _, created = await create(http, fake)
    status, _, event = await read(http, fake)
    assert status == 200
    assert list(spec_validator("MarketingEventPublicReadResponse").iter_errors(event)) == []
    assert event["id"] == event["objectId"] == created["objectId"]
    assert event["externalEventId"] == "ev-1"
    for event_id, account, token in [
        ("nope", "acct-1", TOKEN),
        ("ev-1", "other-account", TOKEN),
        ("ev-1", "acct-1", OTHER_TOKEN),
    ]:
        status, _, answer = await read(http, fake, event_id, account, token)
        assert status == 404
        assert_hubspot_error(answer, "OBJECT_NOT_FOUND")
    status, _, answer = await read(http, fake, account=None)
    assert status == 400
    assert answer["errors"][0]["in"] == "externalAccountId"


async def test_the_rate_limit_answers_429_with_hubspots_body_and_headers(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    fake.set_rate_limit(3, 10_000)
    remaining = []
    for number in range(3):
        status, headers, _ = await create(http, fake, event_body(f"ev-{number}"))
        assert status == 200
        assert headers["X-HubSpot-RateLimit-Max"] == "3"
        assert headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
        remaining.append(headers["X-HubSpot-RateLimit-Remaining"])
    assert remaining == ["2", "1", "0"]
    status, headers, answer = await create(http, fake, event_body("ev-over"))
    assert status == 429
    assert headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert answer["message"] == "You have reached your ten_secondly_rolling limit."
    assert answer["errorType"] == "RATE_LIMIT"
    assert answer["policyName"] == "TEN_SECONDLY_ROLLING"
    assert answer["groupName"]
    uuid.UUID(answer["correlationId"])
    status, _, _ = await read(http, fake, "ev-0")  # GETs count against the same window
    assert status == 429
    assert len(fake.events()) == 3
    assert fake.stats()["rate_limited"] == {"TEN_SECONDLY_ROLLING": 2}


async def test_the_rolling_window_admits_requests_again_once_it_has_passed(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    fake.set_rate_limit(2, 300)
    statuses = [(await read(http, fake))[0] for _ in range(3)]
    assert statuses == [404, 404, 429]
    await asyncio.sleep(0.35)
    assert (await read(http, fake))[0] == 404


async def test_each_private_app_token_has_its_own_rate_limit_bucket(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    fake.set_rate_limit(1, 10_000)
    assert fake.add_token("extra-token", app="partner") == "app:partner"
    assert (await read(http, fake, token=TOKEN))[0] == 404
    assert (await read(http, fake, token=TOKEN))[0] == 429
    assert (await read(http, fake, token=OTHER_TOKEN))[0] == 404
    assert (await read(http, fake, token="extra-token"))[0] == 404
    assert [r["identity"] for r in fake.requests()] == [
        "app:app-1",
        "app:app-1",
        "app:app-2",
        "app:partner",
    ]


async def test_a_spent_daily_budget_answers_429_with_the_daily_policy(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    fake.set_rate_limit(None, daily=2)
    _, headers, _ = await read(http, fake)
    assert headers["X-HubSpot-RateLimit-Daily"] == "2"
    assert headers["X-HubSpot-RateLimit-Daily-Remaining"] == "1"
    assert "X-HubSpot-RateLimit-Max" not in headers
    await read(http, fake)
    status, headers, answer = await create(http, fake)
    assert status == 429
    assert headers["X-HubSpot-RateLimit-Daily-Remaining"] == "0"
    assert answer["policyName"] == "DAILY"
    assert "daily" in answer["message"]
    assert fake.events() == []


async def test_an_oauth_portal_has_no_daily_budget_and_gets_no_daily_headers(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    # Given a daily budget of 1 (private apps) and an OAuth access token
    fake.set_rate_limit(100, daily=1)
    portal = await access_token(http, fake, "daily-free", 303)

    # When the portal makes three calls
    answers = [await read(http, fake, token=portal) for _ in range(3)]

    # Then none is refused and none carries a daily header, only the rolling ones
    assert [status for status, _, _ in answers] == [404, 404, 404]
    for _, headers, _ in answers:
        assert "X-HubSpot-RateLimit-Daily" not in headers
        assert "X-HubSpot-RateLimit-Daily-Remaining" not in headers
        assert headers["X-HubSpot-RateLimit-Max"] == "100"
    # while the private app's second call of the day is refused
    assert (await read(http, fake))[0] == 404
    assert (await read(http, fake))[0] == 429


async def test_the_daily_budget_refuses_an_unknown_time_zone(fake: FakeHubSpot) -> None:
    with pytest.raises(FakeControlError, match="unknown time zone"):
        fake.set_rate_limit(100, daily=10, daily_timezone="Mars/Olympus")
    fake.set_rate_limit(100, daily=10, daily_timezone="Pacific/Kiritimati")


async def test_another_client_spends_part_of_a_tokens_budget_and_counts_its_answers(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    # Given 10 per 1 s, and another client spending 5 per 1 s of the same token's budget
    fake.set_rate_limit(10, window_ms=1000)
    identity = fake.start_other_client(TOKEN, 5, window_ms=1000)
    await asyncio.sleep(1.2)

    # When we make 10 calls at once
    answers = await asyncio.gather(*(read(http, fake) for _ in range(10)))

    # Then HubSpot's count holds the other client's calls: some of ours are refused, and the
    # headers show the budget partly spent by someone else
    statuses = sorted(status for status, _, _ in answers)
    assert 3 <= statuses.count(429) <= 7, statuses
    other = fake.stats()["other_client"]
    assert other["identity"] == identity
    assert other["sent"] >= 6
    assert other["ok"] + other["rate_limited"] == other["sent"]
    # and its calls are not recorded as API requests
    assert len(fake.requests()) == 10
    # And once stopped it spends nothing more
    fake.stop_other_client(TOKEN)
    assert fake.stats()["other_client"] is None


async def test_a_disabled_rate_limit_lets_every_request_through_without_headers(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    fake.disable_rate_limit()
    answers = await asyncio.gather(*(read(http, fake) for _ in range(150)))
    assert {status for status, _, _ in answers} == {404}
    assert all("X-HubSpot-RateLimit-Max" not in headers for _, headers, _ in answers)


async def test_fail_next_answers_the_status_with_retry_after_then_recovers(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    fake.fail_next(2, 503, headers={"Retry-After": "2"})
    assert (await read(http, fake))[0] == 404  # GETs are not affected by default
    for _ in range(2):
        status, headers, answer = await create(http, fake)
        assert status == 503
        assert headers["Retry-After"] == "2"
        assert "X-HubSpot-RateLimit-Remaining" in headers
        assert_hubspot_error(answer, "SERVICE_UNAVAILABLE")
    assert fake.events() == []
    assert (await create(http, fake))[0] == 200
    assert [r["status"] for r in fake.requests()] == [404, 503, 503, 200]
    assert fake.stats()["injected_failures"] == 2


async def test_fail_next_can_hit_gets_too_and_send_a_custom_body(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    fake.fail_next(1, 500, body={"oops": True}, include_get=True)
    status, _, answer = await read(http, fake)
    assert (status, answer) == (500, {"oops": True})
    fake.fail_next(1, 429)
    status, _, answer = await create(http, fake)
    assert status == 429
    assert answer["policyName"] == "TEN_SECONDLY_ROLLING"


async def test_a_failure_rate_of_one_fails_every_create_and_zero_none(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    fake.set_failure_rate(1.0, status=502)
    assert [(await create(http, fake))[0] for _ in range(3)] == [502, 502, 502]
    fake.set_failure_rate(0.0)
    assert (await create(http, fake))[0] == 200


async def test_close_after_create_drops_the_connection_but_keeps_the_event(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    fake.close_after_create(1)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await create(http, fake)
    [event] = fake.events()
    assert event["externalEventId"] == "ev-1"
    [record] = fake.requests()
    assert record["closed"] is True
    assert record["status"] is None
    assert (await create(http, fake, event_body("ev-2")))[0] == 200


async def test_a_hung_create_never_answers_so_the_client_times_out(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    fake.hang(1)
    with pytest.raises(asyncio.TimeoutError):
        await create(http, fake, timeout_s=0.3)
    stats = fake.stats()
    assert (stats["hung"], stats["hanging"]) == (1, 1)
    assert fake.events() == []
    assert (await create(http, fake))[0] == 200
    fake.release_hung()
    await asyncio.sleep(0.05)
    assert fake.stats()["hanging"] == 0
    assert fake.requests()[0]["closed"] is True


async def test_a_repeated_create_makes_a_second_record_by_default(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    first = await create(http, fake)
    second = await create(http, fake)
    assert first[0] == second[0] == 200
    assert first[2]["objectId"] != second[2]["objectId"]
    assert len(fake.events()) == 2


async def test_put_creates_the_event_once_then_updates_it_answering_the_specs_shape(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    # Given an event created by POST
    _, _, created = await create(http, fake)
    # When the same event is PUT twice (the second time with a new name)
    first = await upsert(http, fake)
    second = await upsert(http, fake, event_body(eventName="Renamed"))
    # Then there is still one event, renamed, and each answer is the spec's upsert answer
    assert first[0] == second[0] == 200
    validator = spec_validator("MarketingEventPublicDefaultResponse")
    for _, _, answer in (first, second):
        assert list(validator.iter_errors(answer)) == []
        assert answer["id"] == answer["objectId"] == created["objectId"]
    assert second[2]["eventName"] == "Renamed"
    [event] = fake.events()
    assert event["body"]["eventName"] == "Renamed"
    # and a PUT of an unknown event creates it; another app's PUT makes its own event
    assert (await upsert(http, fake, event_body("ev-2")))[0] == 200
    assert (await upsert(http, fake, token=OTHER_TOKEN))[0] == 200
    assert len(fake.events()) == 3
    assert (fake.stats()["creates"], fake.stats()["upserts"]) == (1, 4)


async def test_put_validates_its_body_like_create_and_needs_the_write_scope(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    status, _, answer = await upsert(http, fake, {**event_body(), "eventName": 7})
    assert status == 400
    assert_hubspot_error(answer, "VALIDATION_ERROR")
    reader = await access_token(http, fake, "reader", 5, scopes=["oauth", READ_SCOPE])
    status, _, answer = await upsert(http, fake, token=reader)
    assert status == 403
    assert answer["errors"][0]["context"]["requiredGranularScopes"] == [WRITE_SCOPE]
    assert fake.events() == []


async def test_put_honours_injected_failures_and_dropped_connections_like_create(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    fake.fail_next(1, 503)
    assert (await upsert(http, fake))[0] == 503
    fake.close_after_create(2)  # aiohttp re-sends an idempotent PUT once on a dropped connection
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await upsert(http, fake)
    assert len(fake.events()) == 1  # stored before the connection was dropped, once
    assert [r["closed"] for r in fake.requests()] == [False, True, True]
    fake.set_failure_rate(1.0, 502)
    assert (await upsert(http, fake))[0] == 502


async def test_a_close_rate_drops_that_share_of_writes_after_storing_the_event(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    # Given every write is dropped after it is stored
    fake.set_close_rate(1.0)
    for number, send in enumerate([create, upsert]):
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await send(http, fake, event_body(f"ev-{number}"))
    # Then both events exist, and no request was answered (aiohttp re-sent the PUT once)
    assert len(fake.events()) == 2
    assert [(r["method"], r["closed"]) for r in fake.requests()] == [
        ("POST", True),
        ("PUT", True),
        ("PUT", True),
    ]
    assert fake.stats()["faults"]["close_rate"] == 1.0
    # and a rate of 0 drops none
    fake.set_close_rate(0.0)
    assert (await create(http, fake, event_body("ev-9")))[0] == 200


async def test_configured_tokens_can_write_but_not_read_by_default() -> None:
    # Given the fake's default private-app scopes (what a private app for this job has)
    config = FakeConfig(tokens=("writer",), rate_limit=None)
    async with TestServer(create_app(config)) as server, aiohttp.ClientSession() as session:
        headers = {"Authorization": "Bearer writer"}
        async with session.post(server.make_url(EVENTS), json=event_body(), headers=headers) as r:
            created = r.status
        url = server.make_url(f"{EVENTS}/ev-1?externalAccountId=acct-1")
        async with session.get(url, headers=headers) as response:
            read_status, answer = response.status, await response.json()
    # Then it creates, and a GET is 403 naming the read scope, as HubSpot answers
    assert created == 200
    assert read_status == 403
    assert answer["category"] == "MISSING_SCOPES"
    assert answer["errors"][0]["context"]["requiredGranularScopes"] == [READ_SCOPE]


async def test_an_oauth_refresh_issues_an_access_token_that_acts_for_its_portal(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    fake.configure_oauth(refresh_tokens={"refresh-1": 4242})
    status, _, answer = await refresh(http, fake, refresh_token="refresh-1")
    assert status == 200
    assert answer["token_type"] == "bearer"
    assert answer["refresh_token"] == "refresh-1"
    assert answer["expires_in"] == 1800
    assert (await create(http, fake, token=answer["access_token"]))[0] == 200
    assert fake.events()[0]["identity"] == "portal:4242"
    assert fake.stats()["token_refreshes"] == {"4242": 1}
    recorded = json.dumps(fake.requests())
    assert answer["access_token"] not in recorded
    assert "refresh-1" not in recorded
    assert "fake-client-secret" not in recorded


async def test_bad_clients_and_unknown_or_revoked_refresh_tokens_are_refused(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    fake.configure_oauth(refresh_tokens={"refresh-1": 1})
    status, _, answer = await refresh(http, fake, refresh_token="refresh-1", client_id="who")
    assert (status, answer["status"]) == (400, "BAD_CLIENT_ID")
    for token in ("unknown", "refresh-1"):
        if token == "refresh-1":
            assert fake.revoke_refresh_token(token) is True
        status, _, answer = await refresh(http, fake, refresh_token=token)
        assert status == 400
        assert answer["error"] == "invalid_grant"
        assert answer["status"] == "BAD_REFRESH_TOKEN"
        assert answer["message"] == "missing or unknown refresh token"
        assert answer["error_description"] == "missing or unknown refresh token"
        uuid.UUID(answer["correlationId"])


async def test_an_expired_access_token_answers_401_expired_authentication(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    token = await access_token(http, fake, "refresh-1", 77, access_token_lifetime_s=1)
    assert (await read(http, fake, token=token))[0] == 404
    await asyncio.sleep(1.05)
    status, _, answer = await read(http, fake, token=token)
    assert status == 401
    assert_hubspot_error(answer, "EXPIRED_AUTHENTICATION")
    assert answer["message"].startswith("The OAuth token used to make this call expired")


async def test_a_token_lacking_a_scope_answers_403_naming_the_scope(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    reader = await access_token(http, fake, "reader", 5, scopes=["oauth", READ_SCOPE])
    status, _, answer = await create(http, fake, token=reader)
    assert status == 403
    assert answer == {
        "status": "error",
        "message": "This app hasn't been granted all required scopes to make this call. "
        "Read more about required scopes here: https://developers.hubspot.com/scopes.",
        "correlationId": answer["correlationId"],
        "category": "MISSING_SCOPES",
        "errors": [
            {
                "message": "One or more of the following scopes are required.",
                "context": {"requiredGranularScopes": [WRITE_SCOPE]},
            }
        ],
    }
    assert (await read(http, fake, token=reader))[0] == 404
    for name, portal, scopes in [("writer", 6, [WRITE_SCOPE]), ("bare", 7, ["oauth"])]:
        token = await access_token(http, fake, name, portal, scopes=scopes)
        status, _, answer = await read(http, fake, token=token)  # write does not imply read
        assert status == 403
        assert answer["errors"][0]["context"]["requiredGranularScopes"] == [READ_SCOPE]
    assert fake.events() == []


async def test_a_portal_limit_applies_to_that_portal_only(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    fake.set_account_rate_limit(101, 1, 10_000)
    small = await access_token(http, fake, "small", 101)
    large = await access_token(http, fake, "large", 202)
    assert (await read(http, fake, token=small))[0] == 404
    status, headers, _ = await read(http, fake, token=small)
    assert status == 429
    assert headers["X-HubSpot-RateLimit-Max"] == "1"
    status, headers, _ = await read(http, fake, token=large)
    assert status == 404
    assert headers["X-HubSpot-RateLimit-Max"] == "100"
    fake.set_account_rate_limit(101, None)
    assert (await read(http, fake, token=small))[0] == 404


async def test_latency_delays_api_answers(fake: FakeHubSpot, http: aiohttp.ClientSession) -> None:
    fake.set_latency(ms=150)
    started = time.monotonic()
    await asyncio.gather(*(read(http, fake) for _ in range(20)))
    assert 0.15 <= time.monotonic() - started < 1.0
    fake.set_latency(min_ms=0, max_ms=20)
    assert fake.stats()["faults"]["latency"] == {"min_ms": 0.0, "max_ms": 20.0}


async def test_requests_are_recorded_in_order_and_can_be_read_incrementally(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    await create(http, fake)
    await read(http, fake)
    first, second = fake.requests()
    assert first["method"] == "POST"
    assert first["path"] == EVENTS
    assert first["body"] == event_body()
    assert first["status"] == 200
    assert first["identity"] == "app:app-1"
    assert first["closed"] is False
    assert first["receivedAt"] <= first["answeredAt"] <= second["receivedAt"]
    assert second["query"] == {"externalAccountId": "acct-1"}
    assert fake.requests(since=1) == [second]
    assert TOKEN not in json.dumps([first, second])
    stats = fake.stats()
    assert (stats["requests"], stats["creates"], stats["events"]) == (2, 1, 1)
    assert stats["by_status"] == {"200": 2}


async def test_wait_for_events_returns_the_events_or_times_out(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    await create(http, fake)
    assert len(fake.wait_for_events(1, timeout_s=1)) == 1
    with pytest.raises(TimeoutError):
        fake.wait_for_events(2, timeout_s=0.1)


async def test_unknown_paths_answer_a_json_404(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    status, _, answer = await call(http, fake, "GET", "/crm/v3/nothing")
    assert status == 404
    assert_hubspot_error(answer, "OBJECT_NOT_FOUND")


async def test_reset_returns_to_the_startup_configuration(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    fake.set_rate_limit(1, 10_000)
    fake.add_token("temporary")
    fake.fail_next(5, 500)
    await create(http, fake, token="temporary")
    fake.reset()
    assert fake.events() == []
    assert fake.requests() == []
    assert (await create(http, fake, token="temporary"))[0] == 401
    status, headers, _ = await create(http, fake)
    assert status == 200
    assert headers["X-HubSpot-RateLimit-Max"] == "100"


async def test_create_app_runs_in_process_with_a_custom_config() -> None:
    config = FakeConfig(tokens=("in-process",), rate_limit=RateLimit(1, 60_000))
    async with TestServer(create_app(config)) as server, aiohttp.ClientSession() as session:
        url = str(server.make_url(EVENTS))
        headers = {"Authorization": "Bearer in-process"}
        statuses = []
        for _ in range(2):
            async with session.post(url, json=event_body(), headers=headers) as response:
                statuses.append(response.status)
    assert statuses == [200, 429]


def test_the_command_line_builds_the_startup_configuration() -> None:
    args = build_parser().parse_args(
        [
            "--token",
            "a",
            "--token",
            "b",
            "--rate-limit",
            "50/500ms",
            "--daily-limit",
            "1000",
            "--oauth-refresh-token",
            "123:rt-x",
            "--oauth-refresh-token",
            f"456:rt-y:{READ_SCOPE}",
            "--access-token-lifetime-s",
            "5",
            "--token-scopes",
            f"{WRITE_SCOPE}, {READ_SCOPE}",
        ]
    )
    config = config_from_args(args)
    assert config.tokens == ("a", "b")
    assert config.token_scopes == (WRITE_SCOPE, READ_SCOPE)
    assert config_from_args(build_parser().parse_args([])).token_scopes == (WRITE_SCOPE,)
    assert config.rate_limit == RateLimit(50, 500)
    assert config.daily_limit == 1000
    assert config.refresh_tokens[0] == RefreshGrant("rt-x", 123)
    assert config.refresh_tokens[1].scopes == (READ_SCOPE,)
    assert config.access_token_lifetime_s == 5
    assert config_from_args(build_parser().parse_args(["--rate-limit", "off"])).rate_limit is None
    assert RateLimit.parse("100/10s") == RateLimit(100, 10_000)


def test_the_rolling_window_measure_counts_a_window_as_half_open() -> None:
    # Given arrivals at 0, 0.5 and 0.999 s, then at 1.0 s (outside the window that starts at 0)
    times = [1.0, 0.0, 0.999, 0.5]
    # Then a 1 s window holds at most 3, a 1.001 s window all 4, and none of an empty record
    assert max_in_any_window(times, 1.0) == 3
    assert max_in_any_window(times, 1.001) == 4
    assert max_in_any_window([], 1.0) == 0


def test_help_fake_lists_every_control_route_with_its_purpose() -> None:
    # Given the routes the fake serves under /_fake/
    app = create_app(FakeConfig())
    served = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/_fake/")
        and route.method in ("GET", "POST")
    }
    # When `eventq fake-hubspot --help-fake` prints its help
    lines = build_parser().format_help().splitlines()
    listed = {
        (parts[0], parts[1]): " ".join(parts[2:])
        for parts in (line.split() for line in lines)
        if len(parts) > 2 and parts[1].startswith("/_fake/")
    }
    # Then each served route has one line with a purpose, and no line names another route
    assert set(listed) == served
    assert all(len(purpose) > 10 for purpose in listed.values())
    assert "{count, status*, headers, body, include_get}" in listed[("POST", "/_fake/fail-next")]


async def test_the_helps_curl_example_makes_the_next_write_fail(
    fake: FakeHubSpot, http: aiohttp.ClientSession
) -> None:
    # Given the curl command the help prints, sent to this fake as curl sends it (a form body)
    [example] = [
        shlex.split(line)
        for line in build_parser().format_help().splitlines()
        if "curl -XPOST" in line
    ]
    url, body = example[2], example[example.index("-d") + 1]
    path = url.removeprefix("http://127.0.0.1:8090")
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    async with http.post(fake.base_url + path, data=body, headers=headers) as answer:
        assert answer.status == 200
    # When an event is created
    status, _, _ = await create(http, fake)
    # Then it gets the 400 the example asked for
    assert status == 400
