"""Take the README's screenshots: Flower's tasks and broker pages, and the admin page (its
overview, the grouped dead-letter list, a job's attempt timeline, and the overview in dark mode).

Starts a throwaway stack (the fake HubSpot, a worker, Flower, `eventq serve`) on an existing
Redis (EVENTQ_REDIS_URL, default redis://localhost:6379/9) under a unique key prefix and queue
names, enqueues jobs of every kind (delivered, retried, dead-lettered), and photographs the pages
with headless Chromium (Playwright driving /usr/bin/chromium) into docs/img/. It deletes its
Redis keys afterwards and never flushes anything.

    .venv/bin/python scripts/screenshots.py      (or: make screenshots)
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eventq import jobs  # noqa: E402
from eventq.keys import Keys  # noqa: E402
from eventq.messaging import celery_argv  # noqa: E402
from eventq.settings import settings_from_env  # noqa: E402
from fake_hubspot.control import FakeHubSpot, free_port, start_fake_subprocess  # noqa: E402
from producers.enqueue import Producer  # noqa: E402

OUT = ROOT / "docs" / "img"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "screenshot-token-" + secrets.token_hex(8)
FLOWER_LOGIN = ("operator", secrets.token_urlsafe(12))
ADMIN_KEY = secrets.token_urlsafe(24)
WEBINARS = [
    ("acme-emea", "spring-launch-2027", "Spring product launch"),
    ("acme-emea", "partner-summit", "Partner summit: keynote"),
    ("acme-us", "onboarding-101", "Onboarding 101"),
    ("acme-us", "roadmap-q3", "Roadmap Q3 live Q&A"),
    ("acme-apac", "dev-day-tokyo", "Developer day Tokyo"),
    ("acme-apac", "security-briefing", "Security briefing"),
    ("acme-emea", "customer-council", "Customer council"),
    ("acme-us", "pricing-webinar", "Pricing & packaging webinar"),
]


def log(message: str) -> None:
    """Print one progress line."""
    print(f"screenshots: {message}", file=sys.stderr, flush=True)


def event(account: str, external_id: str, name: str) -> dict[str, Any]:
    """Return a valid create body."""
    return {
        "externalAccountId": account,
        "externalEventId": external_id,
        "eventName": name,
        "eventOrganizer": "Acme Events",
        "eventType": "WEBINAR",
        "startDateTime": "2027-05-04T15:00:00+00:00",
        "endDateTime": "2027-05-04T16:00:00+00:00",
        "customProperties": [{"name": "campaign", "value": "private-campaign-code"}],
    }


def wait_until(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Poll `check` until it is truthy; raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}")


def answers(url: str) -> bool:
    """Return whether `url` answers with a 2xx/3xx."""
    try:
        with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - loopback URL
            return True
    except OSError:
        return False


def stack_env(fake_url: str) -> dict[str, str]:
    """Return the isolated settings of this run."""
    tag = uuid.uuid4().hex[:8]
    return {
        "EVENTQ_REDIS_URL": os.environ.get("EVENTQ_REDIS_URL", "redis://localhost:6379/9"),
        "EVENTQ_HUBSPOT_BASE_URL": fake_url,
        "EVENTQ_HUBSPOT_ACCESS_TOKEN": TOKEN,
        "EVENTQ_ADMIN_API_KEYS": f"screenshot-admin:{ADMIN_KEY}",
        "EVENTQ_API_KEYS": f"screenshot-producer:{secrets.token_urlsafe(24)}",
        "EVENTQ_KEY_PREFIX": f"shots-{tag}",
        "EVENTQ_QUEUE": "marketing-events",
        "EVENTQ_BULK_QUEUE": "marketing-events-bulk",
        "EVENTQ_BACKOFF_BASE_S": "0.5",
        "EVENTQ_MAX_ATTEMPTS": "3",
        "EVENTQ_RATE_LIMIT": "1000/1s",
        "EVENTQ_METRICS_PORT": "0",
        "EVENTQ_LOG_FORMAT": "text",
    }


@contextmanager
def process(command: list[str], env: dict[str, str], logfile: Path) -> Iterator[None]:
    """Run `command` for the duration of the block, then stop it with SIGTERM."""
    with logfile.open("wb") as out:
        proc = subprocess.Popen(
            command, env={**os.environ, **env}, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            yield
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def start_services(stack: ExitStack, env: dict[str, str], logs: Path) -> tuple[str, str]:
    """Start a worker, Flower and (when it exists) the HTTP service; return their URLs."""
    py = sys.executable
    worker_log = logs / "worker.log"
    stack.enter_context(
        process(
            [
                *(py, "-m", *celery_argv("worker", "-E", "-c", "8")),
                *("-Q", f"{env['EVENTQ_QUEUE']},{env['EVENTQ_BULK_QUEUE']}"),
                *("--hostname", "eventq-worker-1@%h", "--without-mingle", "--without-gossip"),
            ],
            env,
            worker_log,
        )
    )
    flower_port = free_port()
    flower_url = f"http://127.0.0.1:{flower_port}"
    stack.enter_context(
        process(
            [
                *(py, "-m", *celery_argv("flower")),
                *(f"--port={flower_port}", "--address=127.0.0.1"),
                f"--basic-auth={FLOWER_LOGIN[0]}:{FLOWER_LOGIN[1]}",
                "--tasks_columns=name,state,args,result,exception,received,runtime,worker,uuid",
            ],
            env,
            logs / "flower.log",
        )
    )
    http_port = free_port()
    admin_url = f"http://127.0.0.1:{http_port}"
    stack.enter_context(
        process(
            [py, "-m", "eventq", "serve", "--host", "127.0.0.1", "--port", str(http_port)],
            env,
            logs / "http.log",
        )
    )
    wait_until(lambda: answers(f"{admin_url}/healthz"), 30, "the HTTP service")
    wait_until(lambda: b"ready." in worker_log.read_bytes(), 30, "the worker")
    wait_until(lambda: answers(f"{flower_url}/healthcheck"), 30, "Flower")
    return flower_url, admin_url


def job_state(client: redis.Redis, prefix: str, job_id: str) -> str:
    """Return a job's state from its Redis hash."""
    return jobs.job_state(client, Keys(prefix), job_id) or ""


def enqueue_jobs(env: dict[str, str], fake: FakeHubSpot) -> str:
    """Create a history worth looking at: delivered, retried, rate-limited and dead-lettered;
    returns the id of a job dead-lettered after its retries ran out (for its timeline)."""
    settings = settings_from_env(env)
    producer = Producer(settings)
    client = redis.Redis.from_url(settings.redis_url)

    def settle(job_id: str, state: str) -> None:
        wait_until(lambda: job_state(client, settings.key_prefix, job_id) == state, 30, state)

    fake.fail_next(1, 503)
    settle(producer.enqueue(event(*WEBINARS[0]))[0], "delivered")
    fake.fail_next(
        1,
        400,
        body={
            "status": "error",
            "message": "Property values were not valid: eventType",
            "category": "VALIDATION_ERROR",
            "correlationId": str(uuid.uuid4()),
        },
    )
    settle(producer.enqueue(event(*WEBINARS[1]))[0], "dead_lettered")
    fake.set_failure_rate(1.0, 503)
    exhausted = producer.enqueue(event(*WEBINARS[2]))[0]
    settle(exhausted, "dead_lettered")
    fake.set_failure_rate(0.0)
    for webinar in WEBINARS[3:]:
        settle(producer.enqueue(event(*webinar))[0], "delivered")
    dead_letter_a_group(producer, fake, settle)
    return exhausted


def dead_letter_a_group(producer: Producer, fake: FakeHubSpot, settle: Callable[..., Any]) -> None:
    """Have HubSpot reject a dozen events with one message and three with another, so the
    dead-letter list has groups to show."""
    for count, message in ((12, "eventOrganizer is not allowed here"), (3, "Invalid eventUrl")):
        fake.fail_next(
            count,
            400,
            body={"status": "error", "message": message, "category": "VALIDATION_ERROR"},
        )
        job_ids = [
            producer.enqueue(event("acme-emea", f"{message[:7]}-{n}", f"Regional meetup {n}"))[0]
            for n in range(count)
        ]
        for job_id in job_ids:
            settle(job_id, "dead_lettered")


def make_backlog(env: dict[str, str], fake: FakeHubSpot) -> None:
    """Slow HubSpot down and queue a backlog, so the broker page has queue lengths to show."""
    settings = settings_from_env(env)
    producer = Producer(settings)
    fake.set_latency(ms=4000)
    for n in range(40):
        producer.enqueue(event("acme-emea", f"newsletter-{n}", f"Newsletter webinar {n}"))
    for n in range(25):
        backfill = event("acme-us", f"backfill-2026-{n}", f"Backfill 2026 #{n}")
        producer.enqueue(backfill, priority="bulk", source="cli")
    time.sleep(1.0)


def photograph(
    flower_url: str, admin_url: str, env: dict[str, str], fake: FakeHubSpot, job_id: str
) -> list[Path]:
    """Open each page in headless Chromium and save a PNG; return the files written."""
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - a browser tool, only here

    OUT.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        flower = browser.new_context(
            viewport={"width": 1680, "height": 820},
            http_credentials={"username": FLOWER_LOGIN[0], "password": FLOWER_LOGIN[1]},
        )
        page = flower.new_page()
        page.goto(f"{flower_url}/tasks")
        page.wait_for_selector("#tasks-table tbody tr td", timeout=20_000)
        page.wait_for_timeout(500)
        written.append(OUT / "flower-tasks.png")
        page.screenshot(path=str(written[-1]))
        make_backlog(env, fake)
        page.goto(f"{flower_url}/broker")
        page.wait_for_load_state("networkidle")
        written.append(OUT / "flower-broker.png")
        page.screenshot(path=str(written[-1]))
        written += photograph_admin(browser, admin_url, job_id)
        browser.close()
    return written


def admin_page(browser: Any, admin_url: str, scheme: str) -> Any:
    """Return a logged-in admin page at 1280x800 in the `light` or `dark` color scheme."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme=scheme)
    page = context.new_page()
    page.goto(f"{admin_url}/admin/login")
    page.fill("#key", ADMIN_KEY)
    page.click("#login")
    page.wait_for_url(f"{admin_url}/admin/", timeout=10_000)
    page.wait_for_selector("#ov-chart svg", timeout=10_000)
    page.wait_for_selector("#group-rows tr", timeout=10_000)
    page.wait_for_timeout(500)
    return page


def photograph_admin(browser: Any, admin_url: str, job_id: str) -> list[Path]:
    """Log in to /admin/ and photograph the overview (light and dark), the grouped dead-letter
    list and the attempt timeline of `job_id`."""
    page = admin_page(browser, admin_url, "light")
    shots = [OUT / "admin-overview.png"]
    page.screenshot(path=str(shots[-1]))
    page.locator("#group-rows tr").first.get_by_role("button", name="Show").click()
    page.wait_for_selector("#dlq-rows tr", timeout=10_000)
    page.wait_for_timeout(300)
    shots.append(OUT / "admin-dead-letters.png")
    page.locator("section", has=page.locator("#dlq-title")).screenshot(path=str(shots[-1]))
    page.fill("#job-id", job_id)
    page.click("#job-lookup")
    page.wait_for_selector("#job-timeline svg circle", timeout=10_000)
    page.wait_for_timeout(300)
    shots.append(OUT / "admin-job-timeline.png")
    page.locator("section", has=page.locator("#jobs-title")).screenshot(path=str(shots[-1]))
    page.context.close()
    dark = admin_page(browser, admin_url, "dark")
    shots.append(OUT / "admin-overview-dark.png")
    dark.screenshot(path=str(shots[-1]))
    dark.context.close()
    return shots


def clean_up(env: dict[str, str]) -> None:
    """Delete this run's Redis keys (its prefix and its Celery queues)."""
    client = redis.Redis.from_url(env["EVENTQ_REDIS_URL"])
    for key in client.scan_iter(f"{env['EVENTQ_KEY_PREFIX']}:*", count=1000):
        client.delete(key)
    for queue in (env["EVENTQ_QUEUE"], env["EVENTQ_BULK_QUEUE"]):
        client.delete(queue)


def main() -> int:
    """Run the stack, take the screenshots, stop everything; returns the exit code."""
    if not Path(CHROMIUM).exists():
        log(f"no {CHROMIUM}: run `make tools` (apt-get install chromium) first")
        return 1
    logs = Path(os.environ.get("EVENTQ_SCREENSHOT_LOGS", "/tmp/eventq-screenshots"))  # noqa: S108
    logs.mkdir(parents=True, exist_ok=True)
    fake_proc, fake_url = start_fake_subprocess(args=["--token", TOKEN, "--rate-limit", "off"])
    env = stack_env(fake_url)
    try:
        with ExitStack() as stack:
            flower_url, admin_url = start_services(stack, env, logs)
            job_id = enqueue_jobs(env, FakeHubSpot(fake_url))
            time.sleep(1.5)  # Flower receives the last task events
            fake = FakeHubSpot(fake_url)
            for path in photograph(flower_url, admin_url, env, fake, job_id):
                log(f"wrote {path.relative_to(ROOT)}")
        leaked = [p for p in OUT.glob("*.png") if TOKEN.encode() in p.read_bytes()]
        if leaked:
            log(f"token bytes in {leaked}?!")
            return 1
        return 0
    finally:
        fake_proc.terminate()
        fake_proc.wait(10)
        clean_up(env)
        log(f"process logs in {logs} ({json.dumps(sorted(p.name for p in logs.iterdir()))})")


if __name__ == "__main__":
    raise SystemExit(main())
