"""Production Redis: TLS with an ACL user, READONLY during a failover, Sentinel, durable writes.

Every Redis here is a private `redis-server` on free loopback ports in a tmp dir
(tests/integration/redis_servers.py); the shared Redis on 6379 is never touched.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from eventq.durable_writes import WriteNotConfirmed
from eventq.messaging import celery_argv
from eventq.redis_conn import async_client, sync_client
from eventq.settings import load_settings
from fake_hubspot.control import FakeHubSpot, free_port
from producers.enqueue import Producer
from tests.conftest import TOKEN, Stack, valid_event, wait_for
from tests.integration.helpers import states_of, wait_state
from tests.integration.http_support import KEY_ENV, Api, running_service
from tests.integration.redis_servers import (
    CertFiles,
    RedisServer,
    SentinelSet,
    make_test_ca,
    plain_server,
    replicas_online,
    start_sentinel_set,
    tls_supported,
)
from worker.redis_batching import BatchingRedis

PASSWORD = "pw-" + uuid.uuid4().hex  # unique, so a leak is easy to grep for


def _env(redis_url: str, fake: FakeHubSpot, **extra: str) -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    return {
        "EVENTQ_REDIS_URL": redis_url,
        "EVENTQ_HUBSPOT_BASE_URL": fake.base_url,
        "EVENTQ_HUBSPOT_ACCESS_TOKEN": TOKEN,
        "EVENTQ_KEY_PREFIX": f"rp-{tag}",
        "EVENTQ_QUEUE": f"rpq-{tag}",
        "EVENTQ_BULK_QUEUE": f"rpqb-{tag}",
        "EVENTQ_BACKOFF_BASE_S": "0.5",
        "EVENTQ_MAX_ATTEMPTS": "8",
        "EVENTQ_CONNECT_TIMEOUT_S": "2",
        "EVENTQ_READ_TIMEOUT_S": "2",
        "EVENTQ_VISIBILITY_TIMEOUT_S": "5",
        "EVENTQ_RATE_LIMIT": "1000/1s",
        "EVENTQ_RATE_LIMIT_PAD_MS": "0",
        "EVENTQ_METRICS_PORT": "0",
        "EVENTQ_BREAKER_FAILURES": "1000",
        "EVENTQ_SCHEDULER_INTERVAL_S": "0.05",
        "EVENTQ_RECOVER_AFTER_S": "10",
        "EVENTQ_REDIS_RETRY_S": "15",
        **extra,
    }


# --- TLS and an ACL user ------------------------------------------------------------------------


@pytest.fixture
def test_ca(tmp_path: Path) -> CertFiles:
    if not tls_supported():
        pytest.skip("this redis-server was built without TLS (--tls-port unknown)")
    return make_test_ca(tmp_path / "ca")


@pytest.fixture
def tls_redis(tmp_path: Path, test_ca: CertFiles) -> Iterator[RedisServer]:
    """A redis-server speaking TLS only, asking for a client certificate, with one ACL user
    `eventq` (the default user switched off)."""
    server = plain_server(tmp_path, name="tls")
    port = server.port
    server.args = [
        *("--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", ""),
        *("--tls-cert-file", str(test_ca.server_cert), "--tls-key-file", str(test_ca.server_key)),
        *("--tls-ca-cert-file", str(test_ca.ca), "--tls-auth-clients", "yes"),
        *("--user", "eventq", "on", f">{PASSWORD}", "~*", "&*", "+@all"),
        *("--user", "default", "off"),
    ]
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tls_stack(tls_redis: RedisServer, test_ca: CertFiles, fake: FakeHubSpot, tmp_path: Path):  # type: ignore[no-untyped-def]
    env = _env(
        f"rediss://eventq:{PASSWORD}@127.0.0.1:{tls_redis.port}/0",
        fake,
        EVENTQ_REDIS_TLS_CA_FILE=str(test_ca.ca),
        EVENTQ_REDIS_TLS_CERT_FILE=str(test_ca.client_cert),
        EVENTQ_REDIS_TLS_KEY_FILE=str(test_ca.client_key),
    )
    made = Stack(env=env, tmp=tmp_path)
    try:
        yield made
    finally:
        made.stop_workers()


def test_the_pipeline_and_a_dlq_replay_run_over_tls_with_an_acl_user_and_a_client_cert(
    tls_stack: Stack, fake: FakeHubSpot
) -> None:
    stack = tls_stack
    # Given a worker on a TLS-only Redis that wants a client certificate and an ACL password
    stack.start_worker(concurrency=8)
    producer = Producer(stack.settings)
    # When one job is enqueued and another is refused by HubSpot until it is fixed
    delivered_id, _ = producer.enqueue(valid_event("tls-1"))
    fake.refuse_event("evt-tls-2")
    refused_id, _ = producer.enqueue(valid_event("tls-2"))
    # Then the first is delivered and the second lands in the DLQ, over TLS
    wait_state(stack, delivered_id, "delivered", timeout_s=20)
    wait_state(stack, refused_id, "dead_lettered", timeout_s=20)
    listed = stack.run_cli("dlq", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)
    entry_ids = [e["id"] for e in (entries["entries"] if isinstance(entries, dict) else entries)]
    assert len(entry_ids) == 1
    # and once HubSpot accepts it, a replay from the CLI delivers it
    fake.accept_event("evt-tls-2")
    replayed = stack.run_cli("dlq", "replay", entry_ids[0])
    assert replayed.returncode == 0, replayed.stderr
    wait_for(
        lambda: {e["body"]["externalEventId"] for e in fake.events()} >= {"evt-tls-1", "evt-tls-2"},
        20,
        "both events at the fake",
    )
    # and the password shows nowhere: worker logs, CLI output
    assert PASSWORD not in stack.log_text()
    assert PASSWORD not in listed.stdout + listed.stderr + replayed.stdout + replayed.stderr


def test_a_wrong_redis_password_stops_the_worker_and_the_service_with_one_clear_line(
    tls_stack: Stack, tls_redis: RedisServer
) -> None:
    # Given the right TLS files but a wrong password
    stack = tls_stack
    stack.env["EVENTQ_REDIS_URL"] = f"rediss://eventq:wrong-{PASSWORD}@127.0.0.1:{tls_redis.port}/0"
    for command in ("worker", "serve"):
        # When the worker (or the HTTP service) starts
        started = stack.run_cli(command)
        # Then it exits 1 with one line naming where (password hidden), why and what to check
        assert started.returncode == 1, started.stderr
        line = started.stderr.strip()
        assert "\n" not in line, line
        assert "Traceback" not in line
        assert f"rediss://eventq:***@127.0.0.1:{tls_redis.port}/0" in line
        assert "invalid username-password pair" in line
        assert "EVENTQ_REDIS_URL" in line
        assert PASSWORD not in started.stdout + started.stderr


# --- READONLY: the address now reaches a replica ------------------------------------------------


class SwitchablePair:
    """Two servers, A and B, B replicating A: `demote()` makes A a read-only replica of B (as a
    failover behind a fixed address does), `promote()` makes A the primary again.

    Both use Redis's coordinated `FAILOVER` (writes paused until the replica has caught up), so
    no acknowledged write is lost: what is under test is the READONLY answers, not data loss.
    """

    def __init__(self, workdir: Path) -> None:
        self.a, self.b = plain_server(workdir, name="a"), plain_server(workdir, name="b")
        self._a, self._b = redis.Redis(port=self.a.port), redis.Redis(port=self.b.port)

    def start(self) -> None:
        self.a.start()
        self.b.start()
        self._b.replicaof("127.0.0.1", self.a.port)
        self._wait_linked(self._a)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.a.port}/0"

    def demote(self) -> None:
        self._switch(self._a, self._b)

    def promote(self) -> None:
        self._switch(self._b, self._a)

    def _switch(self, primary: redis.Redis, replica: redis.Redis) -> None:
        primary.execute_command("FAILOVER")
        deadline = time.monotonic() + 10
        while replica.info("replication")["role"] != "master":
            assert time.monotonic() < deadline, "FAILOVER did not finish within 10 s"
            time.sleep(0.01)
        self._wait_linked(replica)

    def _wait_linked(self, primary: redis.Redis) -> None:
        deadline = time.monotonic() + 10
        while not replicas_online(primary):
            assert time.monotonic() < deadline, "replica did not link within 10 s"
            time.sleep(0.02)

    def stop(self) -> None:
        self._a.close()
        self._b.close()
        self.a.stop()
        self.b.stop()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[SwitchablePair]:
    made = SwitchablePair(tmp_path)
    try:
        made.start()
        yield made
    finally:
        made.stop()


def _promote_later(pair: SwitchablePair, after_s: float) -> threading.Timer:
    timer = threading.Timer(after_s, pair.promote)
    timer.start()
    return timer


def test_a_write_answered_readonly_is_retried_until_the_address_is_a_primary_again(
    pair: SwitchablePair,
) -> None:
    settings = load_settings(redis_url=pair.url, redis_retry_s=10)
    client = sync_client(settings)
    # Given Redis at our address is now a read-only replica, and will be primary again in 1 s
    pair.demote()
    with pytest.raises(redis.ReadOnlyError):
        redis.Redis.from_url(pair.url).set("k", "refused")  # a plain client gives up at once
    timer = _promote_later(pair, 1.0)
    # When our clients write (blocking, asyncio, and the worker's batching client)
    started = time.monotonic()
    client.set("k", "sync")

    async def write_async() -> None:
        pair.demote()
        _promote_later(pair, 1.0)
        plain = async_client(settings)
        batching = async_client(settings, client_class=BatchingRedis)
        await asyncio.gather(plain.set("a", "1"), batching.set("b", "2"), batching.incr("n"))
        await plain.aclose()
        await batching.aclose()

    asyncio.run(write_async())
    timer.join()
    # Then every write waited for the primary and landed, none raised
    assert time.monotonic() - started >= 1.5
    assert client.mget("k", "a", "b", "n") == [b"sync", b"1", b"2", b"1"]


def test_with_readonly_retries_exhausted_the_error_is_a_connection_error(
    pair: SwitchablePair,
) -> None:
    # (so a worker requeues the message and the HTTP service answers 503, as for Redis down)
    client = sync_client(load_settings(redis_url=pair.url, redis_retry_s=0.5))
    pair.demote()
    with pytest.raises(redis.ConnectionError, match="READONLY"):
        client.set("k", "v")


def test_a_worker_delivering_through_readonly_errors_loses_and_dead_letters_nothing(
    pair: SwitchablePair, fake: FakeHubSpot, tmp_path: Path
) -> None:
    stack = Stack(env=_env(pair.url, fake), tmp=tmp_path)
    try:
        # Given a worker delivering 100 jobs slowly (4 at a time, the fake answers in 100 ms)
        fake.set_latency(100)
        producer = Producer(stack.settings)
        accepted = [producer.enqueue(valid_event(f"ro-{i}"))[0] for i in range(100)]
        worker = stack.start_worker(concurrency=4)
        wait_for(lambda: fake.stats()["events"] >= 10, 20, "10 events delivered")
        # When its Redis answers READONLY for 2 s (a failover and back behind one address)
        pair.demote()
        time.sleep(2.0)  # the outage itself: what is being survived
        delivered_during = fake.stats()["events"]
        pair.promote()
        # Then every job is delivered once, none dead-lettered, and the worker never exited
        wait_for(
            lambda: states_of(stack, accepted)["delivered"] == len(accepted), 30, "all delivered"
        )
        assert delivered_during < len(accepted)  # the outage really was mid-run
        per_event = Counter(e["body"]["externalEventId"] for e in fake.events())
        assert {k: n for k, n in per_event.items() if n > 1} == {}
        assert worker.poll() is None
        print(f"readonly: {delivered_during} delivered when Redis came back")
    finally:
        fake.set_latency(0)
        stack.stop_workers()


# --- durable writes -----------------------------------------------------------------------------


def test_a_durable_enqueue_with_no_replica_to_confirm_it_raises_a_retryable_error(
    tmp_path: Path, fake: FakeHubSpot
) -> None:
    server = plain_server(tmp_path).start()
    try:
        url = f"redis://127.0.0.1:{server.port}/0"
        env = _env(url, fake, EVENTQ_REDIS_DURABLE_WRITES="true")
        env["EVENTQ_REDIS_DURABLE_TIMEOUT_MS"] = "100"
        producer = Producer(Stack(env=env, tmp=tmp_path).settings)
        # When a job is enqueued on a Redis that has no replica
        with pytest.raises(WriteNotConfirmed, match="confirmed by 0 of 1"):
            producer.enqueue(valid_event("durable-1"))
        # Then the same enqueue with durable writes off is accepted: the error was only about
        # the confirmation, and retrying is safe (the same job, by external id)
        env.pop("EVENTQ_REDIS_DURABLE_WRITES")
        _, duplicate = Producer(Stack(env=env, tmp=tmp_path).settings).enqueue(
            valid_event("durable-1")
        )
        assert duplicate
    finally:
        server.stop()


# --- Sentinel failover ----------------------------------------------------------------------------


@pytest.fixture
def sentinel_set(tmp_path: Path) -> Iterator[SentinelSet]:
    made = start_sentinel_set(tmp_path / "ha")
    try:
        yield made
    finally:
        made.stop()


CHUNK, CHUNKS = 100, 30  # 3,000 jobs
KILL_AFTER_CHUNKS = 10
IN_FLIGHT_AT_MOST = 40  # 2 workers x 16 deliveries, and some


def _wait_until_settled(stack: Stack, ids: list[str], jobs: int) -> int:
    """Wait until every accepted job is delivered, or until no more are delivered for 15 s (a job
    the failover lost never will be); return how many were delivered."""
    delivered, last_change = 0, time.monotonic()
    deadline = time.monotonic() + 120
    while delivered < jobs and time.monotonic() - last_change < 15:
        if time.monotonic() > deadline:
            break
        now_delivered = states_of(stack, ids)["delivered"]
        if now_delivered != delivered:
            delivered, last_change = now_delivered, time.monotonic()
        time.sleep(0.5)
    return delivered


def _enqueue_chunk(stack: Stack, api: Api, chunk: int) -> list[str]:
    """Enqueue one chunk of events, through the HTTP service (even chunks, one batch request) or
    the CLI (odd chunks, one `eventq enqueue` of a JSON Lines file); return their job ids, or
    raise when the producer was not told that every one was accepted."""
    events = [valid_event(f"fo-{chunk * CHUNK + n}") for n in range(CHUNK)]
    if chunk % 2 == 0:
        answer = api.post("/v1/events/batch", json={"events": events})
        if answer.status_code != 202:
            raise RuntimeError(f"HTTP {answer.status_code}")
        ids = [r.get("jobId") for r in answer.json()["results"]]
    else:
        path = stack.tmp / f"chunk-{chunk}.jsonl"
        path.write_text("".join(json.dumps(e) + "\n" for e in events))
        ran = stack.run_cli("enqueue", "--json", str(path))
        if ran.returncode != 0:
            raise RuntimeError(f"CLI exit {ran.returncode}")
        ids = [json.loads(line).get("jobId") for line in ran.stdout.splitlines() if line]
    if len(ids) != CHUNK or not all(ids):
        raise RuntimeError("not every item accepted")
    return [str(i) for i in ids]


def _start_flower(stack: Stack) -> tuple[subprocess.Popen[bytes], str]:
    """Start Flower on the stack's broker (Sentinel's primary); return it and its base URL."""
    port = free_port()
    log = stack.tmp / "flower.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", *celery_argv("flower", f"--port={port}", "--address=127.0.0.1")],
        env={**os.environ, **stack.env, "FLOWER_UNAUTHENTICATED_API": "true"},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    stack.workers.append(proc)  # stopped with the workers
    base_url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _answers(base_url + "/healthcheck"), 30, "Flower to listen")
    return proc, base_url


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _flower_workers(base_url: str) -> set[str]:
    answer = requests.get(base_url + "/api/workers?refresh=1", timeout=15)
    return set(answer.json()) if answer.status_code == 200 else set()


@pytest.mark.parametrize("durable", [True, False], ids=["durable-writes", "no-durable-writes"])
def test_a_sentinel_failover_mid_run_loses_nothing_and_needs_no_restart(
    sentinel_set: SentinelSet, fake: FakeHubSpot, tmp_path: Path, durable: bool
) -> None:
    env = _env(
        "redis://127.0.0.1/0",
        fake,
        EVENTQ_REDIS_SENTINELS=sentinel_set.sentinels,
        EVENTQ_REDIS_DURABLE_WRITES=str(durable).lower(),
        **KEY_ENV,
    )
    stack = Stack(env=env, tmp=tmp_path)
    try:
        # Given two workers, Flower and the HTTP service on Sentinel's primary (three sentinels,
        # two replicas), and producers enqueueing 3,000 jobs at a steady rate in chunks of 100,
        # through the HTTP service and the CLI by turns, retrying a chunk they were not told was
        # wholly accepted (idempotent by external id)
        workers = [stack.start_worker(concurrency=16) for _ in range(2)]
        flower, flower_url = _start_flower(stack)
        accepted: dict[int, list[str]] = {}
        errors: Counter[str] = Counter()
        deadline = time.monotonic() + 120
        resumed_after_s: float | None = None
        with running_service(stack.settings) as base_url:
            api = Api(base_url)
            for chunk in range(CHUNKS):
                if chunk == KILL_AFTER_CHUNKS:
                    # When the primary is killed (SIGKILL) mid-run
                    old_primary = sentinel_set.primary_port()
                    sentinel_set.primary.kill()
                    killed_at = time.monotonic()
                    events_at_kill = int(fake.stats()["events"])
                while chunk not in accepted:
                    if time.monotonic() > deadline:
                        pytest.fail(f"chunk {chunk} not accepted in time; errors {dict(errors)}")
                    try:
                        accepted[chunk] = _enqueue_chunk(stack, api, chunk)
                    except Exception as error:
                        errors[str(error)[:60]] += 1
                        time.sleep(0.2)
                resuming = chunk >= KILL_AFTER_CHUNKS and resumed_after_s is None
                if resuming and int(fake.stats()["events"]) > events_at_kill + IN_FLIGHT_AT_MOST:
                    resumed_after_s = time.monotonic() - killed_at
                time.sleep(0.2)
            # and the HTTP service still answers after the failover, without a restart
            assert api.get("/readyz").status_code == 200
        # Then the sentinels promoted a replica
        replica_ports = {r.port for r in sentinel_set.replicas}
        assert sentinel_set.primary_port() in replica_ports
        assert old_primary not in replica_ports
        # and no event was created twice
        ids = [job_id for chunk in sorted(accepted) for job_id in accepted[chunk]]
        jobs = CHUNK * CHUNKS
        settled = _wait_until_settled(stack, ids, jobs)
        if resumed_after_s is None:
            resumed_after_s = time.monotonic() - killed_at
        per_event = Counter(e["body"]["externalEventId"] for e in fake.events())
        assert {k: n for k, n in per_event.items() if n > 1} == {}
        lost = jobs - settled
        print(
            f"failover ({'durable writes' if durable else 'no durable writes'}): producer errors "
            f"{dict(errors)}, delivery resumed {resumed_after_s:.1f}s, accepted jobs lost {lost}"
        )
        if durable:  # every job a producer was told was accepted is delivered, exactly once
            assert lost == 0
            assert set(per_event) == {f"evt-fo-{i}" for i in range(jobs)}
        # by the same worker processes, delivery having resumed within 30 s of the kill
        assert all(w.poll() is None for w in workers)
        assert resumed_after_s < 30
        # and Flower, never restarted, still sees both workers through the new primary
        assert flower.poll() is None
        seen = wait_for(lambda: _flower_workers(flower_url), 30, "Flower to list the workers")
        assert len([name for name in seen if name.startswith("w")]) >= 2, seen
    finally:
        stack.stop_workers()


def test_doctor_checks_a_tls_redis_with_the_same_tls_files_and_password(
    tls_stack: Stack, tls_redis: RedisServer
) -> None:
    # When eventq doctor runs with the TLS settings every client uses
    ran = tls_stack.run_cli("doctor", "--json")
    # Then it reaches Redis over TLS (a plain or CA-less client could not), password unprinted
    redis_line = next(c for c in json.loads(ran.stdout)["checks"] if c["name"] == "Redis")
    assert redis_line["status"] == "ok", redis_line
    assert f"127.0.0.1:{tls_redis.port}/0" in redis_line["detail"]
    assert PASSWORD not in ran.stdout + ran.stderr
