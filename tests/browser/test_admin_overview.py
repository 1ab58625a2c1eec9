"""The admin page's overview, grouped list, bulk actions and audit log in headless Chromium.

Each scenario loads the page once, on a state seeded straight into Redis as workers would have
written it; the numbers on screen are checked against what Redis holds, the page must log no
console error, and its CSP header must stay the one below (written out, not imported, so that a
change to it fails here).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from playwright.sync_api import ConsoleMessage, Page, expect

from eventq.dead_letters import DeadLetterStore
from eventq.depths import queue_depths
from eventq.jobs import JobStore
from eventq.keys import Keys
from eventq.settings import Settings
from fake_hubspot.control import FakeHubSpot
from producers.enqueue import Producer
from tests.conftest import Stack, dead_letter_entry, valid_event, wait_for
from tests.integration.http_support import ADMIN_KEY
from tests.integration.test_http_overview import ORGANIZER, open_breaker_and_pause_limiter

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@pytest.fixture
def console_errors(page: Page) -> Iterator[list[str]]:
    """Console errors and uncaught exceptions of the page; the test fails if any appear."""
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(f"{message.text} ({message.location.get('url')})")

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield errors
    assert errors == []


def in_thread(func: Callable[[], Any]) -> Any:
    """Run `func` in another thread (Playwright's sync API owns this thread's event loop)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(func).result()


def log_in(page: Page, base_url: str) -> None:
    """Log in with the admin key and check the admin page's CSP on the way."""
    page.goto(base_url + "/admin/login")
    page.fill("#key", ADMIN_KEY)
    with page.expect_response(base_url + "/admin/") as answer:
        page.click("#login")
    assert answer.value.headers["content-security-policy"] == CSP
    expect(page.locator("#key-name")).to_have_text("oncall")


def seed_dead_letters(
    settings: Settings, payloads: list[dict[str, Any]], *, reason: str, message: str
) -> list[str]:
    """Dead-letter one job per payload as a worker does (job record + entry); returns job ids."""
    entries = [
        dead_letter_entry(p, reason=reason, http_status=400, message=message)  # type: ignore[arg-type]
        for p in payloads
    ]

    async def write() -> None:
        client = aioredis.Redis.from_url(settings.redis_url)
        keys = Keys(settings.key_prefix)
        store = JobStore(client, keys, ledger_ttl_s=600, job_ttl_s=600)
        for entry in entries:
            await client.hset(
                keys.job(entry.jobId),
                mapping={"jobId": entry.jobId, "state": "in_progress", "createdAt": time.time()},
            )
            await store.mark_dead_lettered(entry.jobId, entry, entry.attempts[-1])
        await client.aclose()

    in_thread(lambda: asyncio.run(write()))
    return [entry.jobId for entry in entries]


def states(client: redis.Redis, keys: Keys, job_ids: list[str]) -> list[bytes | None]:
    with client.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hget(keys.job(job_id), "state")
        return pipe.execute()


def test_the_overview_shows_what_redis_holds(
    stack: Stack,
    service_settings: Settings,
    service: str,
    page: Page,
    redis_client: redis.Redis,
    console_errors: list[str],
) -> None:
    # Given two queued jobs, one scheduled retry, dead letters in three groups, an open breaker
    # and a paused bucket
    settings = service_settings
    keys = Keys(settings.key_prefix)
    for n in range(2):
        Producer(settings).enqueue(valid_event(n))
    redis_client.zadd(keys.schedule, {"later": time.time() + 60})
    seed_dead_letters(
        settings, [valid_event(n) for n in range(3)], reason="rejected", message=ORGANIZER
    )
    seed_dead_letters(settings, [valid_event(5)], reason="rejected", message="other")
    seed_dead_letters(settings, [{"eventName": "x"}], reason="invalid", message="no organizer")
    in_thread(lambda: open_breaker_and_pause_limiter(settings, time.time() + 3600))
    # When an admin logs in
    log_in(page, service)
    # Then the overview's numbers are Redis's: queues, schedule, DLQ by reason (counted here
    # from the entries themselves), the hour's dead letters
    queues = queue_depths(redis_client, [settings.queue, settings.bulk_queue])
    expect(page.locator("#ov-live")).to_have_text(str(queues[settings.queue]))
    expect(page.locator("#ov-bulk")).to_have_text(str(queues[settings.bulk_queue]))
    expect(page.locator("#ov-schedule")).to_have_text(str(redis_client.zcard(keys.schedule)))
    entries = list(DeadLetterStore(redis_client, keys).iter_matching())
    expect(page.locator("#ov-dlq-total")).to_have_text(str(len(entries)))
    for reason in ("rejected", "invalid", "auth"):
        count = sum(1 for e in entries if e.reason == reason)
        expect(page.locator(f"#ov-reason-{reason}")).to_have_text(str(count))
    expect(page.locator("#ov-hour-dead")).to_have_text(str(len(entries)))
    assert page.locator("#ov-chart svg g").count() == 60
    assert page.locator("#ov-chart svg rect.dead").count() >= 1
    # and the limiter's pause, the breaker and the largest group first
    expect(page.locator("#ov-buckets")).to_contain_text("paused (DAILY)")
    expect(page.locator("#ov-breakers .state")).to_have_text("open")
    first = page.locator("#group-rows tr").first
    expect(first).to_contain_text("3 \N{MULTIPLICATION SIGN}")
    expect(first).to_contain_text(ORGANIZER)
    assert (queues[settings.queue], len(entries)) == (2, 5)  # the seeding did what it says


def test_a_group_of_300_is_replayed_with_one_confirm_after_a_dry_run_and_all_delivered(
    stack: Stack,
    fake: FakeHubSpot,
    service_settings: Settings,
    service: str,
    page: Page,
    redis_client: redis.Redis,
    console_errors: list[str],
) -> None:
    # Given 300 dead letters that HubSpot rejected with one message, and 2 with another
    settings = service_settings
    keys = Keys(settings.key_prefix)
    group = seed_dead_letters(
        settings, [valid_event(f"g{n}") for n in range(300)], reason="rejected", message=ORGANIZER
    )
    others = seed_dead_letters(
        settings, [valid_event(f"o{n}") for n in range(2)], reason="rejected", message="other"
    )
    stack.start_worker(concurrency=150)  # two batch upserts
    log_in(page, service)
    # When the admin acts on the group and previews a replay
    row = page.locator("#group-rows tr", has_text=ORGANIZER)
    expect(row).to_contain_text("300 \N{MULTIPLICATION SIGN}")
    row.get_by_role("button", name="Act on").click()
    expect(page.locator("#bulk-scope")).to_have_value("filter")
    page.select_option("#bulk-action", "replay")
    page.click("#bulk-preview")
    # Then the dry run counts the 300, refuses none, and nothing moved yet
    expect(page.locator("#bulk-summary")).to_have_text(
        "Dry run of 300: 300 would be replayed, 0 refused (invalid after re-validation), 0 gone."
    )
    assert set(states(redis_client, keys, group)) == {b"dead_lettered"}
    # When the admin confirms once
    page.click("#bulk-confirm")
    # Then all 300 are replayed and delivered, the other group untouched
    expect(page.locator("#bulk-summary")).to_have_text("Done: 300 replayed.", timeout=60_000)
    wait_for(lambda: set(states(redis_client, keys, group)) == {b"delivered"}, 60, "300 delivered")
    delivered = {e["body"]["externalEventId"] for e in fake.events()}
    assert {f"evt-g{n}" for n in range(300)} <= delivered
    assert set(states(redis_client, keys, others)) == {b"dead_lettered"}
    # and the audit log lists the replay of the 300 above its dry run
    audit = page.locator("#audit-rows tr")
    expect(audit.nth(0)).to_contain_text("replay")
    expect(audit.nth(0)).to_contain_text("replayed=300")
    expect(audit.nth(1)).to_contain_text("would_replay=300")


def test_a_patch_that_leaves_2_of_10_invalid_is_previewed_as_2_refusals_and_8_replays(
    stack: Stack,
    service_settings: Settings,
    service: str,
    page: Page,
    redis_client: redis.Redis,
    console_errors: list[str],
) -> None:
    # Given 10 entries without an organizer, 2 of which also carry a wrong eventCancelled
    settings = service_settings
    payloads = []
    for n in range(10):
        event = valid_event(f"p{n}", **({"eventCancelled": "maybe"} if n < 2 else {}))
        del event["eventOrganizer"]
        payloads.append(event)
    seed_dead_letters(settings, payloads, reason="invalid", message="eventOrganizer: missing")
    log_in(page, service)
    rows = page.locator("#dlq-rows tr")
    expect(rows).to_have_count(10)
    # When the admin selects all 10 rows with the keyboard
    rows.first.focus()
    for n in range(10):
        page.keyboard.press("Space")
        if n < 9:
            page.keyboard.press("ArrowDown")
    expect(page.locator("#bulk-selected")).to_have_text("10 selected")
    # and previews a replay with a patch that sets the organizer
    page.fill("#bulk-patch", '{"eventOrganizer": "Acme"}')
    page.click("#bulk-preview")
    # Then the preview says 8 replays and lists the 2 refusals with their field errors
    expect(page.locator("#bulk-summary")).to_have_text(
        "Dry run of 10: 8 would be replayed, 2 refused (invalid after re-validation), 0 gone."
    )
    refusals = page.locator("#bulk-refusals li")
    expect(refusals).to_have_count(2)
    for n in range(2):
        expect(refusals.nth(n)).to_contain_text("eventCancelled")
    # When the admin confirms
    page.click("#bulk-confirm")
    # Then the 8 are replayed, the 2 stay listed, and the audit log says it was patched
    expect(page.locator("#bulk-summary")).to_have_text("Done: 8 replayed.")
    expect(rows).to_have_count(2)
    expect(page.locator("#audit-rows tr").first).to_contain_text("replayed=8")
    expect(page.locator("#audit-rows tr").first).to_contain_text("yes")
