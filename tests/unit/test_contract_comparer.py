"""The comparer that keeps the fake honest: shapes of answers, and every difference between a
recorded exchange and its replay (status, compared headers, body shape), and nothing else."""

from __future__ import annotations

import copy
from typing import Any

from fake_hubspot.contract import compare, compared_headers, shape_of


def exchange(step: str = "create", status: int = 200, **changes: Any) -> dict[str, Any]:
    response = {
        "status": status,
        "headers": {
            "Content-Type": "application/json;charset=utf-8",
            "X-HubSpot-RateLimit-Max": "190",
            "X-HubSpot-RateLimit-Remaining": "188",
            "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
            "Date": "Wed, 02 Dec 2026 10:00:00 GMT",
            "CF-Ray": "abc",
        },
        "body_shape": shape_of(
            {"objectId": "1", "eventName": "x", "customProperties": [], "eventCancelled": False}
        ),
    }
    response.update(changes)
    return {"step": step, "request": {"method": "POST", "path": "/x"}, "response": response}


def test_a_shape_keeps_keys_and_types_but_no_value() -> None:
    body = {"id": "123", "n": 4, "ok": True, "none": None, "list": [{"a": 1.5}], "empty": []}

    shape = shape_of(body)

    assert shape == {
        "id": "string",
        "n": "number",
        "ok": "boolean",
        "none": "null",
        "list": [{"a": "number"}],
        "empty": [],
    }
    assert "123" not in str(shape)


def test_identical_runs_have_no_difference() -> None:
    assert compare([exchange()], [exchange()]) == []


def test_a_changed_status_is_a_difference() -> None:
    assert compare([exchange(status=200)], [exchange(status=201)]) == [
        "create: status 200 recorded, 201 now"
    ]


def test_a_renamed_header_is_a_difference_both_ways() -> None:
    renamed = exchange()
    headers = renamed["response"]["headers"]
    headers["X-HubSpot-RateLimit-Maximum"] = headers.pop("X-HubSpot-RateLimit-Max")

    differences = compare([exchange()], [renamed])

    assert differences == [
        "create: header x-hubspot-ratelimit-max recorded, missing now",
        "create: header x-hubspot-ratelimit-maximum not recorded, present now",
    ]


def test_header_values_that_count_requests_and_infrastructure_headers_are_not_compared() -> None:
    replayed = exchange()
    headers = replayed["response"]["headers"]
    headers["X-HubSpot-RateLimit-Remaining"] = "99"
    headers["Content-Type"] = "application/json; charset=UTF-8"
    del headers["CF-Ray"], headers["Date"]

    assert compare([exchange()], [replayed]) == []


def test_a_different_media_type_is_a_difference() -> None:
    replayed = exchange()
    replayed["response"]["headers"]["Content-Type"] = "text/html"

    assert compare([exchange()], [replayed]) == [
        "create: header content-type 'application/json' recorded, 'text/html' now"
    ]


def test_a_missing_extra_or_retyped_field_is_a_difference() -> None:
    replayed = copy.deepcopy(exchange())
    shape = replayed["response"]["body_shape"]
    del shape["eventName"]
    shape["objectId"] = "number"
    shape["extra"] = "string"

    assert compare([exchange()], [replayed]) == [
        "create: body.eventName: recorded, missing now",
        "create: body.extra: not recorded, present now",
        "create: body.objectId: string recorded, number now",
    ]


def test_list_elements_are_compared_only_when_both_have_some() -> None:
    recorded = exchange(body_shape={"results": [{"id": "string"}]})

    assert compare([recorded], [exchange(body_shape={"results": []})]) == []
    assert compare([recorded], [exchange(body_shape={"results": [{"id": "number"}]})]) == [
        "create: body.results[].id: string recorded, number now"
    ]


def test_a_replay_with_fewer_exchanges_says_so() -> None:
    assert compare([exchange(), exchange("delete")], [exchange()]) == [
        "2 exchanges recorded, 1 replayed"
    ]


def test_compared_headers_are_lower_case_and_keep_only_what_a_replay_must_match() -> None:
    assert compared_headers(
        {"Retry-After": "3", "X-HubSpot-Correlation-Id": "c", "Server": "cloudflare"}
    ) == {"retry-after": "present", "x-hubspot-correlation-id": "present"}
