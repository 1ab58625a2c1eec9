"""The admin page in headless Chromium (Playwright): log in, filter the DLQ, edit and replay an
invalid entry until it is delivered; an event named `<script>…` shows as text and runs nothing."""

from __future__ import annotations

import json

import redis
from playwright.sync_api import Dialog, Page, expect

from eventq.settings import Settings
from fake_hubspot.control import FakeHubSpot
from producers.enqueue import Producer
from tests.conftest import Stack, valid_event, wait_for
from tests.integration.helpers import send_raw
from tests.integration.http_support import ADMIN_KEY

SCRIPT_NAME = "<script>alert(1)</script>"


def without_organizer(n: str, **changes: str) -> dict[str, object]:
    event = valid_event(n, **changes)
    del event["eventOrganizer"]
    return event


def wait_state(stack: Stack, client: redis.Redis, job_id: str, state: str) -> None:
    """Wait for a job's state, reading Redis synchronously (Playwright owns the event loop)."""
    key = f"{stack.settings.key_prefix}:job:{job_id}"
    wait_for(lambda: client.hget(key, "state") == state.encode(), 30, f"{job_id} {state}")


def test_an_admin_filters_the_dlq_edits_an_invalid_entry_and_sees_it_delivered(
    stack: Stack,
    fake: FakeHubSpot,
    page: Page,
    redis_client: redis.Redis,
    service_settings: Settings,
    service: str,
) -> None:
    # Given a worker that dead-letters two invalid events (one named like a script tag) and one
    # that HubSpot rejects with 400
    stack.start_worker()
    settings = service_settings
    send_raw(settings, [{"jobId": "fix-me", "event": without_organizer("fix-me")}])
    send_raw(settings, [{"jobId": "xss", "event": without_organizer("xss", eventName=SCRIPT_NAME)}])
    fake.fail_next(
        1, 400, body={"status": "error", "message": "bad", "category": "VALIDATION_ERROR"}
    )
    rejected_job, _ = Producer(settings).enqueue(valid_event("rejected"))
    for job_id in ("fix-me", "xss", rejected_job):
        wait_state(stack, redis_client, job_id, "dead_lettered")
    dialogs: list[str] = []

    def record(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", record)
    base_url = service
    # When an admin opens the page, is sent to log in, and logs in with the admin key
    page.goto(base_url + "/admin/")
    expect(page).to_have_url(base_url + "/admin/login")
    page.fill("#key", ADMIN_KEY)
    page.click("#login")
    expect(page).to_have_url(base_url + "/admin/")
    expect(page.locator("#key-name")).to_have_text("oncall")
    rows = page.locator("#dlq-rows tr")
    expect(rows).to_have_count(3)
    # and filters the DLQ by reason
    page.select_option("#filter-reason", "invalid")
    page.click("#filter-apply")
    # Then only the two invalid entries are listed, the script-like name as plain text
    expect(rows).to_have_count(2)
    expect(page.locator("#dlq-rows")).not_to_contain_text("Webinar rejected")
    expect(rows.filter(has_text=SCRIPT_NAME)).to_have_count(1)
    rows.filter(has_text=SCRIPT_NAME).click()
    expect(page.locator("#entry-title")).to_have_text(SCRIPT_NAME)
    assert page.locator("#dlq-rows script, #entry-detail script").count() == 0

    # When the admin opens the other entry and replays it with a wrong edit
    rows.filter(has_text="Webinar fix-me").click()
    expect(page.locator("#entry-title")).to_have_text("Webinar fix-me")
    expect(page.locator("#entry-error")).to_contain_text("eventOrganizer")
    payload = json.loads(page.input_value("#entry-payload"))
    page.fill("#entry-payload", json.dumps(dict(payload, eventCancelled="maybe")))
    page.click("#replay-edited")
    # Then the page shows what is still wrong
    expect(page.locator("#action-status")).to_have_text("Still invalid")
    expect(page.locator("#action-errors")).to_contain_text("eventOrganizer: Field required")
    expect(page.locator("#action-errors")).to_contain_text("eventCancelled")

    # When the missing field is filled in and the entry replayed
    fixed = dict(payload, eventOrganizer="Fixed by on-call")
    page.fill("#entry-payload", json.dumps(fixed, indent=2))
    page.click("#replay-edited")
    # Then it is replayed as its old job, leaves the list, and the page shows it delivered
    expect(page.locator("#action-status")).to_have_text("Replayed as job fix-me")
    expect(rows).to_have_count(1)
    expect(page.locator("#job-state")).to_have_text("delivered", timeout=30_000)
    expect(page.locator("#job-object-id")).not_to_be_empty()

    # and HubSpot has the edited event, once; no script ran at any point
    created = [e["body"] for e in fake.events() if e["body"]["externalEventId"] == "evt-fix-me"]
    assert [body["eventOrganizer"] for body in created] == ["Fixed by on-call"]
    assert dialogs == []
