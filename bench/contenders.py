"""One `eventq worker` against the Celery no-op ceiling and a Dramatiq actor, side by side.

All three at 50 ms fake latency, no rate limit, on the same Redis server, measured in steady
state: the rate between the 10th and the 90th percentile of completions (the start-up, the
first connections and the tail are left out). eventq runs as a user runs it: one
`eventq worker` command with its default processes (one per CPU). Its work is enqueued either one
event per call (`Producer.enqueue`, "unpacked": one message each) or in one call
(`Producer.enqueue_many`, "packed": `EVENTQ_PACK_SIZE` jobs, default 50, to a message). Also:
Redis memory per job queued by `enqueue_many`, and each worker process's peak RSS.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil
import redis
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker

from bench.dramatiq_actor import ACTOR_NAME
from bench.harness import (
    ROOT,
    FakeServer,
    Names,
    RssSampler,
    Workers,
    cpu_s,
    make_event,
    python,
    wait_until,
)
from bench.noop_task import NOOP_TASK
from bench.scenarios import LATENCY_MS, _prequeue_tasks, eventq_env
from eventq.settings import settings_from_env
from producers.enqueue import Producer

__all__ = ["Contender", "QueueMemory", "contenders", "queue_memory"]

DRAMATIQ_THREADS = 32
_CELERY_FLAGS = ["--without-mingle", "--without-gossip"]


@dataclass
class Contender:
    """One contender's drain of pre-queued work in steady state."""

    name: str
    events: int
    steady_events_per_s: float
    whole_run_events_per_s: float
    processes: int
    worker_cpu_ms_per_event: float
    peak_rss_mb_per_process: float
    rss_mb_by_process: list[float] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """Return the run as JSON-ready data."""
        return asdict(self)


@dataclass
class QueueMemory:
    """What a backlog queued by `enqueue_many` costs Redis, per job."""

    jobs: int
    event_json_bytes: int
    used_memory_bytes_per_job: float  # server-wide INFO delta: includes anything else running
    key_bytes_per_job: float  # MEMORY USAGE of this backlog's own keys (exact, SAMPLES 0)
    message_bytes_per_job: float  # of which the broker's queue list
    backlog_of_1m_gb: float

    def as_json(self) -> dict[str, Any]:
        """Return the run as JSON-ready data."""
        return asdict(self)


def steady_rate(times: list[float]) -> float:
    """Return completions per second between the 10th and the 90th percentile of `times`."""
    ordered = sorted(times)
    low, high = len(ordered) // 10, len(ordered) * 9 // 10 - 1
    span = ordered[high] - ordered[low]
    return round((high - low) / span, 1) if span > 0 else 0.0


def _tree(pid: int) -> list[psutil.Process]:
    try:
        parent = psutil.Process(pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.Error:
        return []


def _result(
    name: str,
    times: list[float],
    cpu_used_s: float,
    rss: RssSampler,
    processes: int,
) -> Contender:
    by_process = sorted((b / 1e6 for b in rss.peak_by_pid.values()), reverse=True)
    span = max(times) - min(times)
    return Contender(
        name=name,
        events=len(times),
        steady_events_per_s=steady_rate(times),
        whole_run_events_per_s=round(len(times) / span, 1) if span else 0.0,
        processes=processes,
        worker_cpu_ms_per_event=round(cpu_used_s / max(1, len(times)) * 1000, 3),
        peak_rss_mb_per_process=round(by_process[0], 1) if by_process else 0.0,
        rss_mb_by_process=[round(mb, 1) for mb in by_process],
    )


def _answered(fake: FakeServer) -> list[float]:
    return [r["answeredAt"] for r in fake.control.requests() if r["status"] in (200, 201)]


def eventq_worker(events: int, redis_url: str, *, packed: bool) -> Contender:
    """Drain `events` through one `eventq worker` command (default processes, no limit)."""
    names = Names()
    client = redis.Redis.from_url(redis_url)
    cpus = len(os.sched_getaffinity(0))
    try:
        with FakeServer(latency_ms=LATENCY_MS) as fake:
            env = eventq_env(names, fake, redis_url, EVENTQ_RATE_LIMIT="100000/1s")
            producer = Producer(settings_from_env(env))
            bodies = [make_event(names.tag, i) for i in range(events)]
            if packed:
                producer.enqueue_many(bodies)
            else:
                for body in bodies:
                    producer.enqueue(body)
            names.hide(client)
            command = [python(), "-m", "eventq", "worker", *_CELERY_FLAGS]
            with Workers(command, env, 1, ready_marks=cpus) as workers:
                workers.wait_ready()
                with RssSampler(workers.processes) as rss:
                    before = workers.cpu_s()
                    names.release(client)
                    wait_until(
                        lambda: int(fake.control.stats()["events"]) >= events,
                        events / 10 + 60,
                        f"{events} deliveries (eventq worker)",
                        every_s=0.1,
                    )
                    used = workers.cpu_s() - before
                processes = len(workers.processes()) - 1  # the supervisor delivers nothing
            times = _answered(fake)
    finally:
        names.cleanup(client)
    label = "unpacked (enqueue, one by one)"
    if packed:
        pack_size = settings_from_env(env).pack_size
        label = f"packed (enqueue_many, {pack_size} events per message)"
    return _result(f"eventq worker ({processes} processes), {label}", times, used, rss, processes)


def _queue_sampler(
    client: redis.Redis, queue: str, total: int, stop: threading.Event
) -> Callable[[], list[float]]:
    """Sample the queue's length; return a function giving one completion time per message."""
    samples: list[tuple[float, int]] = []

    def run() -> None:
        while not stop.is_set():
            samples.append((time.time(), int(client.llen(queue))))
            stop.wait(0.005)

    thread = threading.Thread(target=run, name="queue-sampler", daemon=True)
    thread.start()

    def times() -> list[float]:
        thread.join(5)
        out: list[float] = []
        taken = 0
        for at, length in samples:  # messages taken since the last sample count as taken now
            now_taken = total - length
            out += [at] * max(0, now_taken - taken)
            taken = max(taken, now_taken)
        return out

    return times


def noop_ceiling(events: int, redis_url: str) -> Contender:
    """Drain `events` Celery no-op messages (an event each) with the default prefork pool."""
    names = Names()
    client = redis.Redis.from_url(redis_url)
    env = {"BENCH_BROKER_URL": redis_url, "BENCH_QUEUE": names.queue}
    try:
        bodies = (make_event(names.tag, i) for i in range(events))
        _prequeue_tasks(names, redis_url, NOOP_TASK, bodies)
        command = [python(), "-m", "celery", "-A", "bench.noop_task", "worker"]
        command += ["-Q", names.queue, *_CELERY_FLAGS]
        with Workers(command, env, 1) as workers:
            workers.wait_ready()
            stop = threading.Event()
            with RssSampler(workers.processes) as rss:
                before = workers.cpu_s()
                names.release(client)  # one RENAME: every message is there from now on
                times = _queue_sampler(client, names.queue, events, stop)
                wait_until(lambda: client.llen(names.queue) == 0, events / 50 + 60, "no-op drain")
                stop.set()
                used = workers.cpu_s() - before
            processes = len(workers.processes())
            taken = times()
    finally:
        names.cleanup(client)
    name = f"Celery no-op task (prefork -c {psutil.cpu_count()}, default)"
    return _result(name, taken, used, rss, processes)


def dramatiq_actor(events: int, redis_url: str) -> Contender:
    """Drain `events` through a Dramatiq actor posting with requests (CPUs x 32 threads)."""
    names = Names()
    namespace = f"bench-dq-{names.tag}"
    client = redis.Redis.from_url(redis_url)
    cpus = len(os.sched_getaffinity(0))
    proc: subprocess.Popen[bytes] | None = None
    try:
        with FakeServer(latency_ms=LATENCY_MS) as fake:
            broker = RedisBroker(url=redis_url, namespace=namespace)
            broker.declare_queue(names.queue)
            for i in range(events):
                body = make_event(names.tag, i)
                broker.enqueue(Message(names.queue, ACTOR_NAME, (body,), {}, {}))
            env = {
                **os.environ,
                "BENCH_BROKER_URL": redis_url,
                "BENCH_DRAMATIQ_NAMESPACE": namespace,
                "BENCH_QUEUE": names.queue,
                "BENCH_HUBSPOT_BASE_URL": fake.base_url,
                "BENCH_HUBSPOT_TOKEN": fake.token,
                "PYTHONPATH": str(ROOT),
            }
            command = [python(), "-m", "dramatiq", "bench.dramatiq_actor"]
            command += ["--processes", str(cpus), "--threads", str(DRAMATIQ_THREADS)]
            command += ["--queues", names.queue]
            proc = subprocess.Popen(
                command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            with RssSampler(lambda: _tree(proc.pid) if proc else []) as rss:
                wait_until(
                    lambda: int(fake.control.stats()["events"]) >= events,
                    events / 10 + 60,
                    f"{events} deliveries (dramatiq)",
                    every_s=0.1,
                )
                used = sum(cpu_s(p) for p in _tree(proc.pid))  # whole life: start-up included
                processes = len(_tree(proc.pid))
            times = _answered(fake)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for key in client.scan_iter(f"{namespace}*", count=1000):
            client.delete(key)
    name = f"Dramatiq actor + requests ({cpus} processes x {DRAMATIQ_THREADS} threads)"
    return _result(name, times, used, rss, processes)


def queue_memory(jobs: int, redis_url: str) -> QueueMemory:
    """Queue `jobs` events with `enqueue_many` (no worker) and measure what Redis holds."""
    names = Names()
    client = redis.Redis.from_url(redis_url)
    env = {
        "EVENTQ_REDIS_URL": redis_url,
        "EVENTQ_KEY_PREFIX": names.prefix,
        "EVENTQ_QUEUE": names.queue,
        "EVENTQ_BULK_QUEUE": names.bulk_queue,
        "EVENTQ_HUBSPOT_ACCESS_TOKEN": "unused",
    }
    try:
        producer = Producer(settings_from_env(env))
        before = int(client.info("memory")["used_memory"])
        for start in range(0, jobs, 1000):
            producer.enqueue_many(make_event(names.tag, i) for i in range(start, start + 1000))
        used = int(client.info("memory")["used_memory"]) - before
        keys = [*client.scan_iter(f"{names.prefix}:*", count=2000)]
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.memory_usage(key, samples=0)
        own = sum(int(n or 0) for n in pipe.execute())
        message = sum(
            int(client.memory_usage(q, samples=0) or 0)
            for q in (names.queue, names.bulk_queue)
            if client.exists(q)
        )
    finally:
        names.cleanup(client)
    per_job = (own + message) / jobs
    return QueueMemory(
        jobs=jobs,
        event_json_bytes=len(json.dumps(make_event(names.tag, 1))),
        used_memory_bytes_per_job=round(used / jobs, 1),
        key_bytes_per_job=round(per_job, 1),
        message_bytes_per_job=round(message / jobs, 1),
        backlog_of_1m_gb=round(per_job * 1_000_000 / 1e9, 2),
    )


def contenders(events: int, noop_events: int, memory_jobs: int, redis_url: str) -> dict[str, Any]:
    """Run every contender once, in turn, and the queue-memory measurement; return the JSON."""
    runs = {
        "noop": noop_ceiling(noop_events, redis_url),
        "eventq_unpacked": eventq_worker(events, redis_url, packed=False),
        "eventq_packed": eventq_worker(events, redis_url, packed=True),
        "dramatiq": dramatiq_actor(events, redis_url),
    }
    out: dict[str, Any] = {name: run.as_json() for name, run in runs.items()}
    out["queue_memory"] = queue_memory(memory_jobs, redis_url).as_json()
    return out
