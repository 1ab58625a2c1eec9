"""Events HubSpot accepts but eventq advises against: accepted with warnings, then delivered.

The Python API, the CLI and a raw Celery message each carry such an event to a real worker, which
delivers it to the fake HubSpot (which validates every body against HubSpot's spec).
"""

from __future__ import annotations

import json
from typing import Any

from fake_hubspot.control import FakeHubSpot
from producers.enqueue import Producer
from tests.conftest import Stack, valid_event
from tests.integration.helpers import send_raw, wait_state


def json_values(text: str) -> list[dict[str, Any]]:
    """Return the JSON documents printed one after another (each may span lines)."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while text[at:].strip():
        at += len(text[at:]) - len(text[at:].lstrip())
        value, at = decoder.raw_decode(text, at)
        found.append(value)
    return found


def test_an_event_with_warnings_is_delivered_end_to_end_by_a_real_worker(
    stack: Stack, fake: FakeHubSpot
) -> None:
    # Given an event with HubSpot's guide's eventUrl, its end before its start and an unknown
    # field, enqueued through the Python API
    event = valid_event(
        "warned", eventUrl="testURL", endDateTime="2027-03-01T08:00:00Z", colour="red"
    )
    result = Producer(stack.settings).enqueue_one(event)
    # Then it is accepted with one warning per field
    assert result.job_id is not None
    assert [w.field for w in result.warnings] == ["eventUrl", "endDateTime", "colour"]
    # and the same kind of event sent by a raw Celery client (no producer to warn it)
    send_raw(stack.settings, [valid_event("raw-warned", eventUrl="testURL", shade="blue")])
    # When a real worker runs
    stack.start_worker()
    # Then the job is delivered, never dead-lettered as invalid
    assert wait_state(stack, result.job_id, "delivered").state == "delivered"
    events = fake.wait_for_events(2, timeout_s=30)
    bodies = {e["body"]["externalEventId"]: e["body"] for e in events}
    # and HubSpot got the event as given, less the fields it does not know
    assert bodies["evt-warned"]["eventUrl"] == "testURL"
    assert bodies["evt-warned"]["endDateTime"] == "2027-03-01T08:00:00.000Z"
    assert "colour" not in bodies["evt-warned"]
    assert bodies["evt-raw-warned"]["eventUrl"] == "testURL"
    assert "shade" not in bodies["evt-raw-warned"]
    assert fake.stats()["by_status"].get("400", 0) == 0


def test_the_cli_enqueues_an_event_with_a_warning_naming_its_line_and_field(
    stack: Stack,
) -> None:
    # Given JSON Lines: an event with eventUrl "testURL", then a clean one
    lines = [valid_event("cli-w", eventUrl="testURL"), valid_event("cli-clean")]
    stdin = "\n".join(json.dumps(line) for line in lines)
    # When `eventq enqueue` reads them
    result = stack.run_cli("enqueue", "-", stdin=stdin)
    # Then both are enqueued, exit 0, and the warning names the line and the field
    assert result.returncode == 0, result.stderr
    assert "warning line 1: eventUrl: not an http(s) URL" in result.stderr
    assert "line 2" not in result.stderr
    assert "2 enqueued (0 already queued), 0 rejected of 2 items, 1 warnings" in result.stderr


def test_the_cli_json_output_carries_each_items_warnings(stack: Stack) -> None:
    # Given the same two kinds of item
    lines = [valid_event("json-w", eventUrl="testURL"), valid_event("json-clean")]
    stdin = "\n".join(json.dumps(line) for line in lines)
    # When `eventq enqueue --json` reads them
    result = stack.run_cli("enqueue", "--json", "-", stdin=stdin)
    assert result.returncode == 0, result.stderr
    items = json_values(result.stdout)
    # Then each item carries its warnings: one on eventUrl for the first, none for the second
    assert [item["item"] for item in items] == ["line 1", "line 2"]
    assert [w["field"] for w in items[0]["warnings"]] == ["eventUrl"]
    assert items[1]["warnings"] == []
    assert all(item["jobId"] and item["error"] is None for item in items)
