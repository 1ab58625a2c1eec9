"""Every error of the HTTP service is JSON of one shape: 400, 404, 405, 413, 415, 422 and 503."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from eventq.settings import settings_from_env
from fake_hubspot.control import free_port
from tests.conftest import valid_event
from tests.integration.http_support import (
    ADMIN_KEY,
    KEY_ENV,
    PRODUCER_KEY,
    Api,
    running_service,
)

SHAPE = {"error", "message", "errors", "requestId"}


@pytest.fixture
def service_env() -> dict[str, str]:
    return {"EVENTQ_MAX_BODY_BYTES": "4096"}


def error_of(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert set(body) >= SHAPE
    assert body["error"] == code
    assert body["requestId"] == response.headers["X-Request-Id"]
    assert "Traceback" not in response.text
    return body


def test_malformed_json_is_400_with_the_line_and_column_where_it_broke(api: Api) -> None:
    # Given a body whose second line lacks a colon
    raw = b'{"externalAccountId": "a",\n  "externalEventId" "e"}'
    # When it is posted
    response = api.post("/v1/events", data=raw, headers={"Content-Type": "application/json"})
    # Then the answer points at line 2, column 21
    body = error_of(response, 400, "malformed_json")
    assert body["position"] == {"line": 2, "column": 21, "offset": 47}
    assert "line 2 column 21" in body["message"]


def test_a_body_that_is_not_utf8_or_holds_nan_is_400(api: Api) -> None:
    headers = {"Content-Type": "application/json"}
    not_utf8 = api.post("/v1/events", data=b'{"eventName": "\xff"}', headers=headers)
    assert "UTF-8" in error_of(not_utf8, 400, "malformed_json")["message"]
    nan = api.post("/v1/events", data=b'{"eventName": NaN}', headers=headers)
    error_of(nan, 400, "malformed_json")
    surrogate = api.post("/v1/events", data=b'{"eventName": "\\ud800"}', headers=headers)
    error_of(surrogate, 400, "malformed_json")


def test_a_body_over_max_body_bytes_is_413_with_or_without_a_content_length(api: Api) -> None:
    big = json.dumps(valid_event(1, eventDescription="x" * 5000)).encode()
    headers = {"Content-Type": "application/json"}
    declared = api.post("/v1/events", data=big, headers=headers)
    assert "4096" in error_of(declared, 413, "body_too_large")["message"]
    chunked = api.post("/v1/events/batch", data=iter([big[:3000], big[3000:]]), headers=headers)
    error_of(chunked, 413, "body_too_large")


def test_a_body_that_is_not_json_is_415(api: Api) -> None:
    response = api.post("/v1/events", data="eventName=x", headers={"Content-Type": "text/plain"})
    body = error_of(response, 415, "unsupported_media_type")
    assert "application/json" in body["message"]
    no_type = api.post("/v1/events", data=b"{}")
    error_of(no_type, 415, "unsupported_media_type")


def test_an_invalid_event_is_422_with_pydantics_field_paths_and_messages(api: Api) -> None:
    # Given an event without a name and with a nameless custom property
    event = valid_event(1, customProperties=[{"value": "v"}], eventCancelled="maybe")
    del event["eventName"]
    # When it is posted
    body = error_of(api.post("/v1/events", json=event), 422, "validation_failed")
    # Then each bad field is named with pydantic's path and message
    problems = {e["field"]: e["message"] for e in body["errors"]}
    assert problems["eventName"] == "Field required"
    assert problems["customProperties.0.name"] == "Field required"
    assert problems["eventCancelled"].startswith("Input should be a valid boolean")
    assert body["message"].startswith("eventName: Field required")


def test_a_json_value_that_is_not_an_object_is_422(api: Api) -> None:
    body = error_of(api.post("/v1/events", json=[1, 2]), 422, "validation_failed")
    assert body["errors"] == [{"field": "event", "message": "expected a JSON object"}]
    batch = error_of(api.post("/v1/events/batch", json={"events": []}), 422, "validation_failed")
    assert batch["errors"][0]["field"] == "events"


def test_bad_query_parameters_and_headers_are_422_naming_them(api: Api) -> None:
    admin = Api(api.base_url, ADMIN_KEY)
    body = error_of(admin.get("/v1/dead-letters?limit=0"), 422, "validation_failed")
    assert body["errors"][0]["field"] == "limit"
    cursor = error_of(admin.get("/v1/dead-letters?cursor=nope"), 422, "validation_failed")
    assert cursor["errors"][0]["field"] == "cursor"
    priority = error_of(
        api.post("/v1/events?priority=urgent", json=valid_event()), 422, "validation_failed"
    )
    assert priority["errors"][0]["field"] == "priority"
    idem = api.post("/v1/events", json=valid_event(), headers={"Idempotency-Key": "a b"})
    assert error_of(idem, 422, "validation_failed")["errors"][0]["field"] == "Idempotency-Key"


def test_unknown_routes_are_404_and_wrong_methods_405_with_allow(api: Api) -> None:
    error_of(api.get("/v2/nothing"), 404, "not_found")
    wrong = api.session.put(api.base_url + "/v1/events", timeout=10)
    error_of(wrong, 405, "method_not_allowed")
    assert wrong.headers["Allow"] == "POST"


def test_redis_down_is_503_json_without_internals() -> None:
    # Given a service whose Redis and broker are a closed port
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings = settings_from_env(KEY_ENV, redis_url=dead)
    with running_service(settings) as base_url:
        api = Api(base_url, PRODUCER_KEY)
        # When an event is posted, and readiness is asked
        response = api.post("/v1/events", json=valid_event())
        ready = api.get("/readyz")
    # Then the answers say "unavailable" and "not ready", with no internals
    body = error_of(response, 503, "unavailable")
    assert response.headers["Retry-After"] == "5"
    assert "redis.exceptions" not in body["message"]
    assert ready.status_code == 503
    assert ready.json() == {
        "status": "not_ready",
        "checks": {"redis": "unreachable", "broker": "unreachable"},
    }
