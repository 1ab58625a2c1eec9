"""`eventq worker --processes 2`: two supervised `celery worker` processes under one command.

Real processes throughout: the `eventq worker` command, its two children, the fake HubSpot over
loopback and the shared Redis (this test's own queues and key prefix).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections import Counter
from pathlib import Path

import psutil
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families

from fake_hubspot.control import FakeHubSpot, free_port
from producers.enqueue import Producer
from tests.conftest import ROOT, Stack, valid_event, wait_for
from tests.integration.helpers import states_of, status_of

BANNER = re.compile(r"(\d+) delivery processes \(pids ([\d, ]+)\)")


def start_processes(stack: Stack, processes: int = 2) -> tuple[subprocess.Popen[bytes], Path]:
    """Start `eventq worker --processes N` and wait until every child says `ready.`."""
    log = stack.tmp / "eventq-worker.log"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "eventq", "worker", "--processes", str(processes)),
            *(
                "-c",
                "16",
                "--without-mingle",
                "--without-gossip",
                "--hostname",
                f"{node(stack)}@%h",
            ),
        ],
        env={**os.environ, **stack.env},
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    stack.workers.append(proc)  # stopped (SIGTERM, then SIGKILL) by the fixture
    stack.logs.append(log)
    wait_for(lambda: log.read_bytes().count(b" ready.") >= processes, 60, "both children ready")
    return proc, log


def node(stack: Stack) -> str:
    """This test's node name (other tests' workers share the broker's remote control)."""
    return f"eq-{stack.env['EVENTQ_KEY_PREFIX']}-"


def child_pids(log: Path) -> list[int]:
    """Return the children's pids from the supervisor's start-up line."""
    found = BANNER.search(log.read_text(errors="replace"))
    assert found is not None, "the start-up line names the processes and their pids"
    return [int(pid) for pid in found.group(2).split(", ")]


def tasks_per_node(stack: Stack) -> dict[str, int]:
    """Ask this test's worker nodes (Celery's remote control) how many deliveries each ran."""
    app = Celery("probe", broker=stack.settings.effective_broker_url)
    stats = app.control.inspect(timeout=3).stats() or {}
    ours = {name: info for name, info in stats.items() if name.startswith(node(stack))}
    return {name.split("@")[0]: sum(info.get("total", {}).values()) for name, info in ours.items()}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def enqueue(stack: Stack, count: int, tag: str) -> list[str]:
    results = Producer(stack.settings).enqueue_many(valid_event(f"{tag}-{n}") for n in range(count))
    return [r.job_id for r in results if r.job_id]


def test_worker_with_two_processes_delivers_jobs_from_both_children(
    stack: Stack, fake: FakeHubSpot
) -> None:
    # Given `eventq worker --processes 2` serving metrics, and HubSpot answering in 50 ms
    fake.set_latency(ms=50)
    metrics_port = free_port()
    stack.env["EVENTQ_METRICS_PORT"] = str(metrics_port)
    _, log = start_processes(stack)
    pids = child_pids(log)
    assert len(pids) == 2
    assert all(alive(pid) for pid in pids)
    # When 400 jobs are enqueued, 10 to a message (so that both children take some)
    stack.env["EVENTQ_PACK_SIZE"] = "10"
    job_ids = enqueue(stack, 400, "both")
    wait_for(lambda: states_of(stack, job_ids)["delivered"] == 400, 90, "400 delivered")
    # Then both children delivered some of the 40 messages, under their own node names, and each
    # event was created once
    per_node = tasks_per_node(stack)
    assert set(per_node) == {node(stack) + "1", node(stack) + "2"}
    assert all(n > 0 for n in per_node.values()), per_node
    assert sum(per_node.values()) == 40
    assert len(fake.events()) == 400
    # and the one metrics port shows both children's attempts added up
    scraped = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(scraped.read().decode())
        for s in family.samples
    }
    assert samples[("eventq_attempts_total", (("outcome", "delivered"),))] == 400
    assert samples[("eventq_hubspot_request_seconds_count", ())] == 400
    assert ("eventq_dlq_depth", ()) in samples  # the Redis-read figures, once


# batches of 8; a short attempt lock (17 s), which the killed child's jobs wait out
BULK_ENV = {
    "EVENTQ_BATCH_SIZE": "8",
    "EVENTQ_BATCH_WAIT_MS": "100",
    "EVENTQ_CONNECT_TIMEOUT_S": "1",
    "EVENTQ_MAX_LIMITER_WAIT_S": "0.5",
}
UPSERT_PATH = "/marketing/v3/marketing-events/events/upsert"


def enqueue_bulk(stack: Stack, count: int, tag: str) -> list[str]:
    events = (valid_event(f"{tag}-{n}") for n in range(count))
    results = Producer(stack.settings).enqueue_many(events, priority="bulk")
    return [r.job_id for r in results if r.job_id]


def batches_in_flight(fake: FakeHubSpot, since: int = 0) -> int:
    """Return how many batch upserts the fake has received (from request `since` on) and not
    answered yet."""
    return sum(
        1
        for r in fake.requests(since)
        if r["path"] == UPSERT_PATH and r["status"] is None and not r["closed"]
    )


def writes_per_event(fake: FakeHubSpot) -> Counter[str]:
    """Count, per external event id, the writes that carried it: batch upserts and single
    POSTs or PUTs."""
    count: Counter[str] = Counter()
    for r in fake.requests():
        if r["path"] == UPSERT_PATH and r["body"]:
            count.update(item["externalEventId"] for item in r["body"]["inputs"])
        elif r["method"] == "PUT":
            count[r["path"].rsplit("/", 1)[-1]] += 1
        elif r["method"] == "POST" and r["body"]:
            count[r["body"]["externalEventId"]] += 1
    return count


def test_a_child_killed_mid_batch_loses_nothing_duplicates_nothing_and_sigterm_drains_both(
    stack: Stack, fake: FakeHubSpot
) -> None:
    # Given `eventq worker --processes 2`, each child taking 16 bulk jobs at once, sent in
    # batches of 8, and HubSpot answering in 1 s
    stack.env.update(BULK_ENV)
    fake.set_latency(ms=1000)
    proc, log = start_processes(stack)
    first, second = child_pids(log)
    job_ids = enqueue_bulk(stack, 64, "kill")
    # When four batch upserts are in flight (two per child: each holds 16 jobs), one child is
    # killed outright
    wait_for(lambda: batches_in_flight(fake) >= 4, 30, "both children's batches in flight")
    os.kill(first, signal.SIGKILL)
    fake.set_latency(ms=50)
    # Then the supervisor starts it again, the other is untouched
    wait_for(lambda: b"worker process 1 started again" in log.read_bytes(), 30, "a restart")
    assert alive(second)
    # And every job is delivered with its own event's object id, each event created once
    wait_for(lambda: states_of(stack, job_ids)["delivered"] == 64, 90, "64 delivered")
    object_ids = {e["body"]["externalEventId"]: e["objectId"] for e in fake.events()}
    assert len(fake.events()) == len(object_ids) == 64
    for n, job_id in enumerate(job_ids):
        status = status_of(stack, job_id)
        assert status is not None
        assert status.objectId == object_ids[f"evt-kill-{n}"]
    # (the killed child's batches were sent again: some events were written twice)
    assert max(writes_per_event(fake).values()) >= 2

    # Given both children with batches in flight again
    fake.set_latency(ms=1000)
    since = len(fake.requests())
    more = enqueue_bulk(stack, 64, "drain")
    wait_for(lambda: batches_in_flight(fake, since) >= 4, 30, "both children's batches in flight")
    pids = [child.pid for child in psutil.Process(proc.pid).children()]
    # When the command gets SIGTERM
    proc.send_signal(signal.SIGTERM)
    # Then it exits 0 once both children drained (well before the fixture would kill it)
    assert proc.wait(timeout=60) == 0
    assert not any(alive(pid) for pid in pids)
    assert "all 2 delivery processes stopped" in log.read_text(errors="replace")
    # And every batch that had reached HubSpot was answered and recorded: its jobs are
    # delivered, the others are still queued for the next worker, nothing is half-way
    states = states_of(stack, more)
    assert batches_in_flight(fake, since) == 0
    assert set(states) <= {"delivered", "queued"}, states
    stored = [e for e in fake.events() if e["externalEventId"].startswith("evt-drain-")]
    assert states["delivered"] == len(stored) >= 32
