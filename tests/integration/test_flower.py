"""Flower as operators use it: `celery -A worker.celery_app flower` against the test broker.

Flower listens to the task events every worker on the broker sends, so it also sees other
tests' tasks on the shared Redis: assertions pick this test's tasks by their unique event ids,
and the secret checks run over the whole answer.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from eventq.messaging import PACK_TASK_NAME, TASK_NAME, celery_argv
from fake_hubspot.control import FakeHubSpot, free_port
from producers.enqueue import Producer
from tests.conftest import ROOT, TOKEN, Stack, valid_event, wait_for
from tests.integration.helpers import send_raw, wait_state

FLOWER_USER = "operator"
FLOWER_PASSWORD = "pw-" + uuid.uuid4().hex[:12]


@dataclass
class Flower:
    """A running Flower and how to ask its API (with the basic auth operators use)."""

    base_url: str
    proc: subprocess.Popen[bytes]

    def get(self, path: str, *, auth: bool = True) -> Any:
        request = urllib.request.Request(f"{self.base_url}{path}")
        if auth:
            pair = base64.b64encode(f"{FLOWER_USER}:{FLOWER_PASSWORD}".encode()).decode()
            request.add_header("Authorization", f"Basic {pair}")
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())

    def get_text(self, path: str) -> str:
        return json.dumps(self.get(path))


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def flower(stack: Stack) -> Iterator[Flower]:
    port = free_port()
    log = (stack.tmp / "flower.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            *celery_argv("flower"),
            f"--port={port}",
            "--address=127.0.0.1",
            f"--basic-auth={FLOWER_USER}:{FLOWER_PASSWORD}",
            f"--db={stack.tmp / 'flower.db'}",
            "--persistent=True",
        ],
        env={**os.environ, **stack.env},
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{base_url}/healthcheck"), 30, "Flower to answer")
        yield Flower(base_url, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def _ours(tasks: dict[str, Any], tag: str) -> list[dict[str, Any]]:
    return [t for t in tasks.values() if tag in (t.get("args") or "")]


def test_flower_shows_named_tasks_with_their_states_and_summaries_but_no_secrets(
    stack: Stack, fake: FakeHubSpot, flower: Flower
) -> None:
    # Given a worker, and Flower following the broker's task events
    tag = uuid.uuid4().hex[:8]
    stack.start_worker()
    producer = Producer(stack.settings)
    # When one job is answered 503 then 200 (retried), one 400 (dead-lettered), three plain
    fake.fail_next(1, 503)
    retried, _ = producer.enqueue(valid_event(f"fl-{tag}-retry"))
    wait_state(stack, retried, "delivered")
    fake.fail_next(1, 400, body={"status": "error", "message": "Property values were not valid"})
    rejected, _ = producer.enqueue(valid_event(f"fl-{tag}-bad"))
    wait_state(stack, rejected, "dead_lettered")
    plain = [producer.enqueue(valid_event(f"fl-{tag}-{i}"))[0] for i in range(3)]
    for job_id in plain:
        wait_state(stack, job_id, "delivered")

    # Then Flower lists each attempt as a task named eventq.create_marketing_event
    def settled() -> list[dict[str, Any]] | None:
        ours = _ours(flower.get("/api/tasks"), tag)
        finished = [t for t in ours if t["state"] in ("SUCCESS", "FAILURE", "RETRY")]
        return ours if len(finished) >= 6 else None

    ours = wait_for(settled, 20, "6 finished attempts in Flower", every_s=0.5)
    assert {t["name"] for t in ours} == {TASK_NAME}
    by_args = {t["args"]: t for t in ours}
    # with the short summary as args: account, external id, event name, attempt
    first_try = by_args[f"acct-1/evt-fl-{tag}-retry 'Webinar fl-{tag}-retry' attempt 1"]
    second_try = by_args[f"acct-1/evt-fl-{tag}-retry 'Webinar fl-{tag}-retry' attempt 2"]
    dead = by_args[f"acct-1/evt-fl-{tag}-bad 'Webinar fl-{tag}-bad' attempt 1"]
    assert first_try["state"] == "RETRY"
    assert "Parked" in first_try["exception"]
    assert "HTTP 503" in first_try["exception"]
    assert second_try["state"] == "SUCCESS"
    assert dead["state"] == "FAILURE"
    assert "DeadLettered" in dead["exception"]
    assert "rejected" in dead["exception"]
    assert (
        sorted(t["state"] for t in ours)
        == ["FAILURE", "RETRY", "SUCCESS", "SUCCESS"] + ["SUCCESS"] * 2
    )
    assert all(t["kwargs"] == "{}" for t in ours)

    # and the queue lengths of eventq's queues
    # (Flower learns the queues by inspecting the workers: at its start, before ours ran, and
    # when asked to refresh; other workers on the same Redis may answer too)
    def lengths() -> dict[str, int] | None:
        flower.get("/api/workers?refresh=1")
        found = flower.get("/api/queues/length")["active_queues"]
        queues = {q["name"]: q["messages"] for q in found}
        return queues if stack.settings.queue in queues else None

    queues = wait_for(lengths, 30, "Flower to list eventq's queues", every_s=1)
    assert queues[stack.settings.queue] == 0
    assert queues[stack.settings.bulk_queue] == 0
    # and nowhere the token or a custom property value (the whole answer, every task)
    everything = flower.get_text("/api/tasks") + flower.get_text("/api/workers")
    assert TOKEN not in everything
    assert f"cp-value-fl-{tag}" not in everything
    for task in ours:
        detail = flower.get_text(f"/api/task/info/{task['uuid']}")
        assert TOKEN not in detail
        assert "cp-value" not in detail


def test_flower_refuses_its_api_without_the_basic_auth_login(flower: Flower) -> None:
    # Given Flower started as compose starts it (with --basic-auth)
    # When the task list is asked for without credentials
    with pytest.raises(urllib.error.HTTPError) as refused:
        flower.get("/api/tasks", auth=False)
    # Then it is refused, while the health check (used by compose) stays open
    assert refused.value.code == 401
    assert _answers(f"{flower.base_url}/healthcheck")


def test_a_raw_celery_message_shows_no_custom_property_values_in_flower(
    stack: Stack, fake: FakeHubSpot, flower: Flower
) -> None:
    # Given a producer that bypasses eventq and sends the bare event with a plain Celery client
    tag = uuid.uuid4().hex[:8]
    stack.start_worker()
    send_raw(stack.settings, [valid_event(f"raw-{tag}")])
    fake.wait_for_events(1, timeout_s=20)

    # When Flower has seen the task
    def seen() -> list[dict[str, Any]] | None:
        return _ours(flower.get("/api/tasks"), f"raw-{tag}") or None

    ours = wait_for(seen, 20, "the raw task in Flower", every_s=0.5)
    # Then the custom property values stay hidden. Note why: a Python Celery client writes
    # repr(args) into the `argsrepr` header itself, cut at task_repr_maxlevels (3) levels, which
    # is above customProperties[].value; a client that sends no argsrepr shows an empty string.
    assert f"cp-value-raw-{tag}" not in json.dumps(ours)
    assert f"evt-raw-{tag}" in ours[0]["args"]


def test_a_pack_shows_in_flower_as_one_task_summarising_its_events_and_their_outcomes(
    stack: Stack, fake: FakeHubSpot, flower: Flower
) -> None:
    # Given a worker, When three events are handed over at once (one pack message)
    tag = uuid.uuid4().hex[:8]
    stack.start_worker()
    results = Producer(stack.settings).enqueue_many(
        [valid_event(f"pk-{tag}-{i}") for i in range(3)]
    )
    for result in results:
        wait_state(stack, result.job_id or "", "delivered")

    # Then Flower shows one task named eventq.create_marketing_events, its args naming the
    # first and last events, its result counting how they ended
    def seen() -> list[dict[str, Any]] | None:
        ours = _ours(flower.get("/api/tasks"), f"pk-{tag}")
        return ours if ours and ours[0]["state"] == "SUCCESS" else None

    [task] = wait_for(seen, 20, "the pack's task in Flower", every_s=0.5)
    assert task["name"] == PACK_TASK_NAME
    assert task["args"] == f"3 events: acct-1/evt-pk-{tag}-0 … acct-1/evt-pk-{tag}-2"
    assert "'delivered': 3" in task["result"]
    detail = flower.get_text(f"/api/task/info/{task['uuid']}")
    assert TOKEN not in detail
    assert "cp-value" not in detail
