"""Hypothesis: 2,000 generated bodies through the batch route. Every one HubSpot's spec refuses is
rejected naming the field that was broken; every other one is accepted (with a warning naming the
field eventq advises against, if any) and delivered to the fake HubSpot."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from fake_hubspot.control import FakeHubSpot
from tests.conftest import Stack
from tests.integration.http_support import Api

BODIES = 2000
PER_BATCH = 500
# (body, the field its refusal must name, the field its warning must name)
Case = tuple[Any, str | None, str | None]

text = st.text(
    st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs")), min_size=1, max_size=40
).filter(lambda s: s.strip() != "")
zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)
moments = st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=zones)
properties = st.lists(
    st.fixed_dictionaries({"name": text, "value": st.text(max_size=60)}), max_size=3
)


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = {
        "externalAccountId": draw(text),
        "externalEventId": f"gen-{draw(st.uuids())}",
        "eventName": draw(text),
        "eventOrganizer": draw(text),
    }
    optional = {
        "eventType": text,
        "eventDescription": st.text(max_size=200),
        "eventUrl": text.map(
            lambda s: "https://example.com/" + "".join(c for c in s if c.isalnum())
        ),
        "eventCancelled": st.booleans(),
        "eventCompleted": st.booleans(),
        "customProperties": properties,
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            event[name] = draw(strategy)
    if draw(st.booleans()):
        start = draw(moments)
        event["startDateTime"] = start.isoformat()
        length = timedelta(minutes=draw(st.integers(0, 600)))
        event["endDateTime"] = (start + length).isoformat()
    return event


def _set(field: str, value: Any) -> Callable[[dict[str, Any]], str]:
    def apply(event: dict[str, Any]) -> str:
        event[field] = value
        return field

    return apply


def _drop(field: str) -> Callable[[dict[str, Any]], str]:
    def apply(event: dict[str, Any]) -> str:
        del event[field]
        return field

    return apply


def _end_before_start(event: dict[str, Any]) -> str:
    event["startDateTime"] = "2027-03-01T12:00:00Z"
    event["endDateTime"] = "2027-03-01T11:00:00Z"
    return "endDateTime"


def _nameless_property(event: dict[str, Any]) -> str:
    event["customProperties"] = [{"value": "v"}]
    return "customProperties.0.name"


def _unknown_source(event: dict[str, Any]) -> str:
    event["customProperties"] = [{"name": "n", "value": "v", "source": "NOT_A_SOURCE"}]
    return "customProperties.0.source"


REQUIRED = ("externalAccountId", "externalEventId", "eventName", "eventOrganizer")
BREAKAGES: list[Callable[[dict[str, Any]], str]] = [  # HubSpot's spec refuses these
    *(_drop(f) for f in REQUIRED),
    *(_set(f, 42) for f in REQUIRED),
    _set("externalEventId", ""),
    _set("startDateTime", "2027-03-01T10:00:00"),  # no time zone
    _set("endDateTime", "next tuesday"),
    _set("eventCancelled", "maybe"),
    _set("customProperties", {"name": "n"}),
    _nameless_property,
    _unknown_source,
]
ADVISED: list[Callable[[dict[str, Any]], str]] = [  # accepted with a warning
    *(_set(f, "   ") for f in REQUIRED),
    _set("eventName", "x" * 513),
    _set("eventUrl", "ftp://example.com/a"),
    _set("eventUrl", "testURL"),
    _set("unexpectedField", 1),
    _end_before_start,
]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    event = draw(valid_events())
    if draw(st.booleans()):
        return event, None, None
    if draw(st.integers(0, 3)) == 0:
        return event, None, draw(st.sampled_from(ADVISED))(event)
    breakage = draw(st.sampled_from([*BREAKAGES, None]))
    if breakage is None:
        return draw(st.sampled_from(["text", 7, [event], None])), "event", None
    return event, breakage(event), None


@pytest.fixture
def service_env() -> dict[str, str]:
    return {"EVENTQ_MAX_BATCH_SIZE": str(PER_BATCH)}


def generated(count: int) -> list[Case]:
    """Return `count` cases drawn by Hypothesis (drawn one by one: a 100-item draw overruns)."""
    drawn: list[Case] = []

    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(cases())
    def collect(case: Case) -> None:
        drawn.append(case)

    collect()
    return drawn


def test_2000_generated_bodies_refused_ones_rejected_by_field_others_warned_and_delivered(
    stack: Stack, fake: FakeHubSpot, api: Api
) -> None:
    # Given a worker, the fake HubSpot and 2,000 generated bodies, about half of them valid
    stack.start_worker(concurrency=32)
    run = uuid.uuid4().hex[:8]
    drawn = generated(BODIES)
    assert len(drawn) >= BODIES
    valid = sum(1 for _, broken, _ in drawn if broken is None)
    assert BODIES // 4 <= valid <= BODIES * 7 // 8
    assert any(advised for _, _, advised in drawn)
    accepted: set[tuple[str, str]] = set()
    for start in range(0, len(drawn), PER_BATCH):
        batch = drawn[start : start + PER_BATCH]
        # When they are posted, a batch at a time
        bodies = [_tagged(body, run) if broken is None else body for body, broken, _ in batch]
        response = api.post("/v1/events/batch", json={"events": bodies})
        assert response.status_code == 202, response.text
        # Then every refused body is rejected naming the broken field, every other accepted,
        # with a warning naming the field eventq advises against
        for body, (_, broken, advised), result in zip(
            bodies, batch, response.json()["results"], strict=True
        ):
            if broken is None:
                assert result["status"] == "accepted", (body, result)
                if advised is not None:
                    assert advised in [w["field"] for w in result["warnings"]], (body, result)
                accepted.add((body["externalAccountId"], body["externalEventId"]))
            else:
                assert result["status"] == "rejected", (body, broken)
                assert broken in [e["field"] for e in result["errors"]], (body, result)
    # and every accepted event reaches HubSpot exactly once
    events = fake.wait_for_events(len(accepted), timeout_s=60)
    delivered = [(e["body"]["externalAccountId"], e["body"]["externalEventId"]) for e in events]
    assert len(delivered) == len(set(delivered))
    assert set(delivered) == accepted


def _tagged(body: dict[str, Any], run: str) -> dict[str, Any]:
    """Make a valid event's id unique to this run (the fake remembers events across tests)."""
    return dict(body, externalEventId=f"{run}-{body['externalEventId']}")
