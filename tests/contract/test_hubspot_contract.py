"""What eventq relies on HubSpot for, asked of HubSpot itself (`make test-live`) or of the fake
(`make test`): the same functions, recorded; the fake run's recording replays without difference.

The steps run in file order on one module-scoped target: create, the idempotent re-send after an
ambiguous failure, read-back, a deliberate 400, rate-limit headers, delete; the last test
replays everything recorded against a fresh fake and lists every difference.
"""

from __future__ import annotations

import copy
import secrets
from pathlib import Path
from typing import Any

import pytest

from fake_hubspot.config import READ_SCOPE, WRITE_SCOPE
from fake_hubspot.contract import compare, load_recording, replay_against_fake
from fake_hubspot.control import FakeHubSpot
from tests.contract.conftest import ACCOUNT, EVENTS_PATH, FAKE_DAILY, LIVE, Target

RATE_HEADERS = (
    "x-hubspot-ratelimit-max",
    "x-hubspot-ratelimit-remaining",
    "x-hubspot-ratelimit-interval-milliseconds",
)
_created: dict[str, Any] = {}


def object_id(body: Any) -> str | None:
    found = body.get("objectId") or body.get("id") if isinstance(body, dict) else None
    return None if found is None else str(found)


def test_create_answers_the_event_with_its_object_id(target: Target) -> None:
    event = target.event("create")

    answer = target.call("create", "POST", EVENTS_PATH, body=event)

    assert answer.status == 200, answer.body
    assert object_id(answer.body), answer.body
    assert answer.body.get("eventName") == event["eventName"]
    _created.update(event=event, object_id=object_id(answer.body))


def test_a_resend_after_an_ambiguous_failure_updates_the_same_event(target: Target) -> None:
    event = target.event("resend")
    first = target.call("ambiguous create", "POST", EVENTS_PATH, body=event)
    assert first.status == 200, first.body  # the answer a timeout would have lost

    again = target.call(
        "idempotent re-send", "PUT", f"{EVENTS_PATH}/{event['externalEventId']}", body=event
    )

    assert again.status == 200, again.body
    assert object_id(again.body) == object_id(first.body)


def test_read_back_where_the_token_has_the_read_scope(target: Target) -> None:
    if not _created:
        pytest.skip("the create step failed")
    event = _created["event"]

    answer = target.call(
        "read back",
        "GET",
        f"{EVENTS_PATH}/{event['externalEventId']}",
        query={"externalAccountId": ACCOUNT},
    )

    if answer.status == 403:
        pytest.skip(f"the token lacks {READ_SCOPE} (HubSpot answered 403, recorded)")
    assert answer.status == 200, answer.body
    assert object_id(answer.body) == _created["object_id"]
    assert answer.body.get("externalEventId") == event["externalEventId"]


def test_an_invalid_body_is_a_400_validation_error(target: Target) -> None:
    answer = target.call("invalid body", "POST", EVENTS_PATH, body={"eventName": "no ids"})

    assert answer.status == 400, answer.body
    assert answer.body.get("category") == "VALIDATION_ERROR"
    assert answer.body.get("message")


def test_answers_carry_the_rate_limit_headers(target: Target) -> None:
    never_made = f"never-made-{secrets.token_hex(4)}"
    lists = f"/marketing/v3/marketing-events/associations/{ACCOUNT}/{never_made}/lists"

    answer = target.call("harmless read (write scope)", "GET", lists)

    assert answer.status in (200, 404), answer.body
    names = {name.lower() for name in answer.headers}
    assert set(RATE_HEADERS) <= names, sorted(names)


def test_delete_removes_the_event(target: Target) -> None:
    if not _created:
        pytest.skip("the create step failed")
    external_id = _created["event"]["externalEventId"]

    answer = target.call(
        "delete", "DELETE", f"{EVENTS_PATH}/{external_id}", query={"externalAccountId": ACCOUNT}
    )

    assert answer.status == 204, answer.body
    target.forget(external_id)


def fresh_token(fake_url: str) -> str:
    """Return a new token of the fake, read and write: an identity with no events yet; the fake
    rate-limits as HubSpot does (the session's fake starts with its limit off)."""
    control, token = FakeHubSpot(fake_url), "replay-" + secrets.token_hex(8)
    control.add_token(token, scopes=[WRITE_SCOPE, READ_SCOPE])
    control.set_rate_limit(100, 10_000, daily=FAKE_DAILY)
    return token


def test_the_recording_replays_against_a_fresh_fake_without_difference(
    target: Target, replay_fake_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "recording.json"
    target.recorder.save(path, target=target.recorder.base_url)
    recording = load_recording(path)
    assert target.recorder.token not in path.read_text()

    differences = replay_against_fake(recording, replay_fake_url, fresh_token(replay_fake_url))

    assert differences == [], "\n".join(differences)


@pytest.mark.skipif(LIVE, reason="edits a recording of the fake; nothing to ask HubSpot")
def test_an_edited_recording_is_reported_as_different(target: Target, fake_process: str) -> None:
    recording = {"exchanges": copy.deepcopy(target.recorder.exchanges)}
    create = recording["exchanges"][0]["response"]
    create["status"] = 201
    create["headers"] = {
        name.replace("RateLimit-Max", "RateLimit-Maximum"): value
        for name, value in create["headers"].items()
    }
    differences = replay_against_fake(recording, fake_process, fresh_token(fake_process))

    assert "create: status 201 recorded, 200 now" in differences
    assert "create: header x-hubspot-ratelimit-maximum recorded, missing now" in differences
    assert "create: header x-hubspot-ratelimit-max not recorded, present now" in differences
    assert len(differences) == 3, differences
    assert compare(target.recorder.exchanges, target.recorder.exchanges) == []
