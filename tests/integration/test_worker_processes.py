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
from collections import Counter
from pathlib import Path

from celery import Celery

from fake_hubspot.control import FakeHubSpot
from producers.enqueue import Producer
from tests.conftest import ROOT, Stack, valid_event, wait_for
from tests.integration.helpers import states_of

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
    # Given `eventq worker --processes 2` and HubSpot answering in 50 ms
    fake.set_latency(ms=50)
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


def test_a_child_killed_mid_run_is_restarted_and_nothing_is_lost_or_duplicated(
    stack: Stack, fake: FakeHubSpot
) -> None:
    # Given two processes delivering 300 jobs slowly (300 ms per answer)
    fake.set_latency(ms=300)
    _, log = start_processes(stack)
    first, second = child_pids(log)
    job_ids = enqueue(stack, 300, "kill")
    wait_for(lambda: len(fake.events()) >= 40, 60, "40 events created")
    # When one child is killed outright while its deliveries are in flight
    os.kill(first, signal.SIGKILL)
    # Then the supervisor starts it again, the other is untouched
    wait_for(lambda: b"worker process 1 started again" in log.read_bytes(), 30, "a restart")
    assert alive(second)
    # And every job is delivered, each event created exactly once at the fake
    wait_for(lambda: states_of(stack, job_ids)["delivered"] == 300, 120, "300 delivered")
    ids = Counter(e["body"]["externalEventId"] for e in fake.events())
    assert len(ids) == 300
    assert max(ids.values()) == 1
    # (the killed child's deliveries in flight were re-sent: more writes than events)
    writes = [r for r in fake.requests() if r["method"] in ("POST", "PUT")]
    assert len(writes) > 300


def test_sigterm_to_the_command_drains_both_children_and_exits_0(
    stack: Stack, fake: FakeHubSpot
) -> None:
    # Given both children with deliveries in flight (HubSpot answers in 1.5 s)
    fake.set_latency(ms=1500)
    proc, log = start_processes(stack)
    pids = child_pids(log)
    job_ids = enqueue(stack, 200, "drain")
    wait_for(lambda: len(fake.requests()) >= 20, 30, "deliveries in flight")
    per_node = tasks_per_node(stack)
    # When the command gets SIGTERM
    proc.send_signal(signal.SIGTERM)
    # Then it exits 0 once both children drained (well before the fixture would kill it)
    assert proc.wait(timeout=60) == 0
    assert not any(alive(pid) for pid in pids)
    assert "all 2 delivery processes stopped" in log.read_text(errors="replace")
    # And every attempt that had reached HubSpot finished and was recorded: no job is left
    # half-way, the others are still queued for the next worker
    states = states_of(stack, job_ids)
    sent = [r for r in fake.requests() if r["method"] == "POST"]
    assert states["delivered"] >= len(sent) > 0
    assert set(states) <= {"delivered", "queued"}, states
    assert len(per_node) == 2
