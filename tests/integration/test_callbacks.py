"""Signed callbacks end to end: real delivery and callback workers, an aiohttp receiver over
loopback, the fake HubSpot. Backoff is shortened by settings (EVENTQ_CALLBACK_BACKOFF_BASE_S)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType

import pytest
import redis
from aiohttp import web

from eventq.callbacks import check_signature, signature_key
from eventq.dead_letters import DeadLetterStore
from eventq.jobs import stored_envelopes
from eventq.keys import Keys
from fake_hubspot.control import FakeHubSpot
from producers.enqueue import Producer, RejectedEvent
from producers.replay import Replayer
from tests.conftest import ROOT, Stack, valid_event, wait_for
from tests.integration.helpers import wait_state
from tests.integration.http_support import Api
from worker.callbacks import GROUP

SECRET = "cb-secret-" + uuid.uuid4().hex  # unique, so a leak into a log is easy to find
EXAMPLE = ROOT / "examples" / "verify_callback.py"


@dataclass
class Received:
    """One request the receiver got: its headers (lower-case names) and raw body."""

    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An aiohttp callback receiver on 127.0.0.1:<free port>: answers `statuses` in turn, then
    200; `hang` makes it never answer."""

    statuses: list[int] = field(default_factory=list)
    hang: bool = False
    got: list[Received] = field(default_factory=list)
    url: str = ""
    released: asyncio.Event = field(default_factory=asyncio.Event)  # ends hung requests

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append(
            Received({k.lower(): v for k, v in request.headers.items()}, await request.read())
        )
        if self.hang:
            await self.released.wait()
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status, text="ok")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    app = web.Application()
    app.router.add_post("/hooks", made.handle)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    made.url = f"http://127.0.0.1:{sock.getsockname()[1]}/hooks"
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.SockSite(runner, sock).start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield made
    loop.call_soon_threadsafe(made.released.set)
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


@pytest.fixture
def callback_env() -> dict[str, str]:
    """Callback settings of a test besides the module's; override it with parametrize."""
    return {}


@pytest.fixture
def service_env() -> dict[str, str]:
    """The HTTP service's settings in this module: loopback callbacks allowed."""
    return {"EVENTQ_CALLBACK_ALLOWED_HOSTS": "127.0.0.1"}


@pytest.fixture
def callback_stack(
    stack: Stack, redis_client: redis.Redis, callback_env: dict[str, str]
) -> Iterator[Stack]:
    """The stack with callbacks on (loopback allowed, short backoff) and a callback worker
    (`eventq callbacks`)."""
    queue = f"qc-{stack.env['EVENTQ_KEY_PREFIX']}"
    stack.env.update(
        {
            "EVENTQ_CALLBACK_SECRET": SECRET,
            "EVENTQ_CALLBACK_ALLOWED_HOSTS": "127.0.0.1",
            "EVENTQ_CALLBACK_QUEUE": queue,
            "EVENTQ_CALLBACK_BACKOFF_BASE_S": "0.1",
            "EVENTQ_CALLBACK_MAX_ATTEMPTS": "4",
            "EVENTQ_CALLBACK_TIMEOUT_S": "1",
            **callback_env,
        }
    )
    log = stack.tmp / "callback-worker.log"
    argv = [
        *(sys.executable, "-m", "eventq", "callbacks", "-c", "8"),
        *("--without-mingle", "--without-gossip", "--hostname", f"cb-{uuid.uuid4().hex[:6]}@%h"),
    ]
    proc = subprocess.Popen(
        argv,
        env={**os.environ, **stack.env},
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    stack.workers.append(proc)  # stopped with the stack's workers
    stack.logs.append(log)
    wait_for(lambda: b"ready." in log.read_bytes(), 30, f"callback worker ready ({log})")
    yield stack
    redis_client.delete(queue)


def _settled(stack: Stack, client: redis.Redis, finished: int) -> bool:
    """True when no callback can still come: every outcome dispatched and acknowledged, the
    queue empty, and `finished` callback tasks ended (delivered or dead-lettered) in the log."""
    stream = Keys(stack.settings.key_prefix).outcomes
    groups = [g for g in client.xinfo_groups(stream) if g["name"] == GROUP.encode()]
    dispatched = bool(groups) and groups[0]["pending"] == 0 and groups[0]["lag"] == 0
    lines = (stack.tmp / "callback-worker.log").read_text(errors="replace").splitlines()
    ended = sum(
        1
        for line in lines
        if "callback of job" in line
        and ("delivered (attempt" in line or "dead-lettered as" in line)
    )
    return dispatched and client.llen(stack.settings.callback_queue) == 0 and ended == finished


def _example_verify() -> ModuleType:
    spec = importlib.util.spec_from_file_location("verify_callback", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_delivered_and_a_dead_lettered_job_each_get_one_signed_callback(
    callback_stack: Stack, fake: FakeHubSpot, receiver: Receiver, redis_client: redis.Redis
) -> None:
    # Given a worker, one event HubSpot accepts and one it refuses, both with a callback URL
    fake.refuse_event("evt-2")
    callback_stack.start_worker(concurrency=4)
    producer = Producer(callback_stack.settings)
    ok_id, _ = producer.enqueue(valid_event(1), callback_url=receiver.url)
    bad_id, _ = producer.enqueue(valid_event(2), callback_url=receiver.url)
    # When both jobs end
    delivered = wait_state(callback_stack, ok_id, "delivered")
    dead = wait_state(callback_stack, bad_id, "dead_lettered")
    wait_for(lambda: len(receiver.got) >= 2, 20, "two callbacks")
    wait_for(lambda: _settled(callback_stack, redis_client, 2), 20, "callbacks settled")
    # Then the receiver got exactly one callback per job, each verifiable with the README's
    # verifier (examples/verify_callback.py) and eventq's own check
    assert len(receiver.got) == 2
    example = _example_verify()
    bodies = {}
    for got in receiver.got:
        assert example.verify(SECRET, got.headers, got.body)
        assert check_signature(signature_key(SECRET), got.headers, got.body, now=time.time())
        assert not example.verify("another-secret", got.headers, got.body)
        assert not example.verify(SECRET, got.headers, got.body + b" ")
        outcome = json.loads(got.body)
        bodies[outcome["jobId"]] = outcome
    assert bodies[ok_id]["state"] == "delivered"
    assert bodies[ok_id]["objectId"] == delivered.objectId
    assert bodies[bad_id]["state"] == "dead_lettered"
    assert bodies[bad_id]["deadLetter"]["id"] == dead.deadLetterId
    assert bodies[bad_id]["deadLetter"]["httpStatus"] == 400
    # and the secret is nowhere in the workers' logs
    assert SECRET not in callback_stack.log_text()


def test_a_receiver_answering_500_three_times_then_200_gets_the_callback_once(
    callback_stack: Stack, fake: FakeHubSpot, receiver: Receiver, redis_client: redis.Redis
) -> None:
    # Given a receiver that answers 500 three times, then 200 (4 attempts allowed)
    receiver.statuses = [500, 500, 500]
    callback_stack.start_worker(concurrency=4)
    job_id, _ = Producer(callback_stack.settings).enqueue(valid_event(), callback_url=receiver.url)
    # When the job is delivered and its callback retried
    wait_state(callback_stack, job_id, "delivered")
    wait_for(lambda: len(receiver.got) >= 4, 20, "four callback tries")
    wait_for(lambda: _settled(callback_stack, redis_client, 1), 20, "callbacks settled")
    # Then it was tried four times with the same id and body, the last one answered 200
    assert len(receiver.got) == 4
    assert len({g.headers["webhook-id"] for g in receiver.got}) == 1
    assert len({g.body for g in receiver.got}) == 1
    log = (callback_stack.tmp / "callback-worker.log").read_text()
    assert "delivered (attempt 4)" in log
    # and nothing went to the dead-letter queue
    assert DeadLetterStore(redis_client, Keys(callback_stack.settings.key_prefix)).count() == 0


@pytest.mark.parametrize(
    "callback_env", [{"EVENTQ_CALLBACK_MAX_ATTEMPTS": "2", "EVENTQ_CALLBACK_TIMEOUT_S": "0.5"}]
)
def test_a_dead_callback_never_blocks_delivery_and_is_dead_lettered_as_callback(
    callback_stack: Stack, fake: FakeHubSpot, receiver: Receiver, redis_client: redis.Redis
) -> None:
    # Given a receiver that never answers (a callback times out after 0.5 s, 2 attempts)
    receiver.hang = True
    callback_stack.start_worker(concurrency=4)
    producer = Producer(callback_stack.settings)
    store = DeadLetterStore(redis_client, Keys(callback_stack.settings.key_prefix))
    # When five jobs with that callback are enqueued
    job_ids = [producer.enqueue(valid_event(i), callback_url=receiver.url)[0] for i in range(5)]
    # Then all five are delivered while their callbacks still hang, none given up yet
    for job_id in job_ids:
        wait_state(callback_stack, job_id, "delivered", timeout_s=10)
    assert store.count() == 0
    # and each callback ends in the dead-letter queue as `callback`, without the secret
    wait_for(lambda: store.count() == 5, 40, "five callback dead letters")
    entries = list(store.iter_matching())
    assert {e.reason for e in entries} == {"callback"}
    assert {e.jobId for e in entries} == set(job_ids)
    assert all(e.callbackUrl == receiver.url for e in entries)
    assert all(SECRET not in e.model_dump_json() for e in entries)
    assert SECRET not in callback_stack.log_text()
    # and once the receiver answers again, replaying one entry sends its callback and drops it
    receiver.hang = False
    tried = len(receiver.got)
    [result] = Replayer(producer).replay_ids([entries[0].id])
    assert result.status == "replayed"
    wait_for(lambda: len(receiver.got) == tried + 1, 10, "the replayed callback")
    log = callback_stack.tmp / "callback-worker.log"
    wait_for(lambda: "delivered (attempt 1)" in log.read_text(), 10, "its delivery")
    assert json.loads(receiver.got[-1].body)["jobId"] == entries[0].jobId
    assert store.count() == 4


def test_a_callback_to_a_host_not_allowed_is_refused_at_enqueue_with_a_field_error(
    api: Api, stack: Stack, redis_client: redis.Redis
) -> None:
    # Given callbacks allowed to 127.0.0.1 only
    producer = Producer(stack.settings)
    # When a job asks for a callback elsewhere, from Python or over HTTP
    with pytest.raises(RejectedEvent) as refused:
        producer.enqueue(valid_event(1), callback_url="https://evil.example/hooks")
    answer = api.post("/v1/events", json={**valid_event(2), "callbackUrl": "https://evil.example/"})
    not_a_url = api.post("/v1/events", json={**valid_event(3), "callbackUrl": "ftp://127.0.0.1/"})
    # Then each is refused with an error naming the field and the fix, and nothing is queued
    assert refused.value.errors[0].field == "callbackUrl"
    assert "EVENTQ_CALLBACK_ALLOWED_HOSTS" in refused.value.errors[0].message
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "callbackUrl"
    assert "'evil.example' is not allowed" in answer.json()["errors"][0]["message"]
    assert not_a_url.status_code == 422
    assert "http(s) URL" in not_a_url.json()["errors"][0]["message"]
    assert redis_client.llen(stack.settings.queue) == 0
    # while an allowed host is accepted, and the job carries its callback
    accepted = api.post("/v1/events", json={**valid_event(4), "callbackUrl": "http://127.0.0.1/h"})
    assert accepted.status_code == 202
    job_id = accepted.json()["jobId"]
    [envelope] = stored_envelopes(redis_client, Keys(stack.settings.key_prefix), [job_id])
    assert envelope.callbackUrl == "http://127.0.0.1/h"
    assert envelope.event.model_dump().get("callbackUrl") is None


def test_the_callback_worker_does_not_start_without_its_secret(stack: Stack) -> None:
    # Given no EVENTQ_CALLBACK_SECRET (the stack sets none)
    # When the callback worker is started
    run = stack.run_cli("callbacks")
    # Then it exits 2 naming the setting, instead of sending unsigned callbacks
    assert run.returncode == 2
    assert "EVENTQ_CALLBACK_SECRET is not set" in run.stderr
