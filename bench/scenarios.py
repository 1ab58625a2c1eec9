"""The benchmark's runs: no-op ceiling, naive baseline, eventq throughput, rate limit, RSS.

Each run starts its own fake HubSpot and workers, pre-queues its work (moved aside while the
workers start), hands it over in one `RENAME` and measures draining. Times of deliveries come
from the fake's records.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil
import redis
from celery import Celery

from bench.harness import (
    CELERY_FLAGS,
    FakeServer,
    Names,
    RssSampler,
    Workers,
    cpu_s,
    make_event,
    python,
    wait_until,
)
from bench.harness import redis_server_process as find_redis
from bench.naive_task import NAIVE_TASK
from bench.noop_task import NOOP_TASK
from eventq.jobs import park_for_retry
from eventq.keys import Keys
from eventq.messaging import celery_argv
from eventq.schema import JobEnvelope, MarketingEvent
from eventq.settings import settings_from_env
from fake_hubspot.control import max_in_any_window
from producers.enqueue import Producer

__all__ = [
    "RateLimitRun",
    "ScheduleRss",
    "SharedBudgetRun",
    "Throughput",
    "eventq_rate_limit",
    "eventq_throughput",
    "naive_rate_limit",
    "naive_throughput",
    "noop_ceiling",
    "schedule_rss",
    "shared_budget",
]

LATENCY_MS = 50.0


@dataclass
class Throughput:
    """One drain of pre-queued work: how fast, and what it cost."""

    name: str
    events: int
    seconds: float
    events_per_s: float
    worker_processes: int
    pool: str
    worker_cpu_ms_per_event: float
    redis_cpu_ms_per_event: float | None
    fake_cpu_ms_per_event: float | None
    peak_rss_mb: float
    requests: int = 0
    settings: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """Return the run as JSON-ready data."""
        return asdict(self)


@dataclass
class RateLimitRun:
    """A run against the fake's rolling limit: deliveries and 429s per window."""

    name: str
    limit: int
    window_s: float
    duration_s: float
    delivered_per_window: list[int]
    rejected_per_window: list[int]
    requests: int
    delivered: int
    rate_limited: int
    max_in_any_window: int
    sustained_fraction: float
    rate_limited_fraction: float
    gave_up: int = 0  # events given up after their last retry (naive task only)
    delivered_series: list[float] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """Return the run as JSON-ready data."""
        return asdict(self)


@dataclass
class ScheduleRss:
    """Worker RSS idle and with many jobs waiting in the retry schedule."""

    jobs: int
    idle_rss_mb: float
    loaded_rss_mb: float
    growth_fraction: float
    redis_memory_mb: float

    def as_json(self) -> dict[str, Any]:
        """Return the run as JSON-ready data."""
        return asdict(self)


@dataclass
class SharedBudgetRun:
    """eventq beside another client of the same app's budget, with or without sharing."""

    name: str
    sharing: bool
    limit: int
    window_s: float
    other_per_window: int
    duration_s: float
    eventq_requests: int
    eventq_delivered: int
    eventq_rate_limited: int
    eventq_429_fraction: float  # of eventq's requests (target <= 2 %)
    other_sent: int
    other_ok: int
    other_kept_fraction: float  # of the other client's requests admitted (target >= 90 %)
    eventq_share_of_left: float  # eventq's delivered rate / what the other leaves (>= 85 %)
    eventq_per_window: list[int] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """Return the run as JSON-ready data."""
        return asdict(self)


class _Meters:
    """CPU of workers, Redis and the fake between `start()` and `stop()`."""

    def __init__(self, workers: Workers, fake: FakeServer | None) -> None:
        self._workers = workers
        self._fake = fake.process if fake else None
        self._redis = find_redis()
        self._start: tuple[float, float, float] = (0.0, 0.0, 0.0)
        self.used: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def _read(self) -> tuple[float, float, float]:
        redis_s = cpu_s(self._redis) if self._redis else 0.0
        fake_s = cpu_s(self._fake) if self._fake else 0.0
        return self._workers.cpu_s(), redis_s, fake_s

    def start(self) -> None:
        self._start = self._read()

    def stop(self) -> None:
        end = self._read()
        self.used = (end[0] - self._start[0], end[1] - self._start[1], end[2] - self._start[2])

    def per_event_ms(self, events: int) -> tuple[float, float | None, float | None]:
        workers, redis_s, fake_s = (u / max(1, events) * 1000 for u in self.used)
        return (
            round(workers, 3),
            round(redis_s, 3) if self._redis else None,
            round(fake_s, 3) if self._fake else None,
        )


def _celery_app(broker_url: str) -> Celery:
    app = Celery("bench-producer", broker=broker_url)
    app.conf.task_serializer = "json"
    return app


def _prequeue_tasks(names: Names, broker_url: str, task: str, bodies: Iterable[Any]) -> None:
    app = _celery_app(broker_url)
    with app.producer_or_acquire() as producer:
        for body in bodies:
            app.send_task(task, args=[body], queue=names.queue, producer=producer)
    names.hide(redis.Redis.from_url(broker_url))


def _prequeue_eventq(env: dict[str, str], names: Names, bodies: Iterable[Any]) -> None:
    producer = Producer(settings_from_env(env))
    results = producer.enqueue_many(bodies)
    names.hide(producer.redis)
    rejected = [r for r in results if not r.accepted]
    if rejected:
        raise RuntimeError(f"{len(rejected)} benchmark events rejected: {rejected[0].errors}")


def eventq_env(names: Names, fake: FakeServer, redis_url: str, **extra: str) -> dict[str, str]:
    """Return the environment of eventq workers for one run (settings override with `extra`)."""
    env = {
        "EVENTQ_REDIS_URL": redis_url,
        "EVENTQ_HUBSPOT_BASE_URL": fake.base_url,
        "EVENTQ_HUBSPOT_ACCESS_TOKEN": fake.token,
        "EVENTQ_KEY_PREFIX": names.prefix,
        "EVENTQ_QUEUE": names.queue,
        "EVENTQ_BULK_QUEUE": names.bulk_queue,
        "EVENTQ_METRICS_PORT": "0",
    }
    env.update(extra)
    return env


def _eventq_command(names: Names, task_events: bool = False) -> list[str]:
    """Return `eventq worker` as Celery runs it: queues, INFO logs; `-E` only when asked."""
    queues = f"{names.queue},{names.bulk_queue}"
    command = celery_argv("worker", "-Q", queues, "--loglevel", "INFO", *CELERY_FLAGS)
    return [python(), "-m", *command, *(["-E"] if task_events else [])]


def _celery_command(app: str, queue: str, pool_args: Sequence[str]) -> list[str]:
    return [python(), "-m", "celery", "-A", app, "worker", "-Q", queue, *CELERY_FLAGS, *pool_args]


def _bench_env(names: Names, redis_url: str, fake: FakeServer | None) -> dict[str, str]:
    env = {"BENCH_BROKER_URL": redis_url, "BENCH_QUEUE": names.queue}
    if fake is not None:
        env["BENCH_HUBSPOT_BASE_URL"] = fake.base_url
        env["BENCH_HUBSPOT_TOKEN"] = fake.token
    return env


def _delivery_span(records: list[dict[str, Any]]) -> tuple[float, float]:
    delivered = [r for r in records if r["status"] == 200]
    first = min(r["receivedAt"] for r in records)
    last = max(r["answeredAt"] for r in delivered)
    return first, last


def _drain(
    name: str,
    workers: Workers,
    fake: FakeServer,
    client: redis.Redis,
    names: Names,
    events: int,
    timeout_s: float,
) -> Throughput:
    """Release the pre-queued work, wait until the fake holds `events` events, and measure."""
    meters = _Meters(workers, fake)
    with RssSampler(workers.processes) as rss:
        meters.start()
        names.release(client)
        wait_until(
            lambda: int(fake.control.stats()["events"]) >= events,
            timeout_s,
            f"{events} deliveries ({name})",
            every_s=0.1,
        )
        meters.stop()
    records = fake.control.requests()
    first, last = _delivery_span(records)
    seconds = last - first
    worker_ms, redis_ms, fake_ms = meters.per_event_ms(events)
    return Throughput(
        name=name,
        events=events,
        seconds=round(seconds, 3),
        events_per_s=round(events / seconds, 1),
        worker_processes=len(workers.procs),
        pool="",
        worker_cpu_ms_per_event=worker_ms,
        redis_cpu_ms_per_event=redis_ms,
        fake_cpu_ms_per_event=fake_ms,
        peak_rss_mb=round(rss.peak_mb, 1),
        requests=len(records),
    )


def noop_ceiling(events: int, redis_url: str) -> Throughput:
    """Drain `events` no-op messages (an event as payload) with Celery's default prefork pool."""
    names = Names()
    client = redis.Redis.from_url(redis_url)
    try:
        _prequeue_tasks(
            names, redis_url, NOOP_TASK, (make_event(names.tag, i) for i in range(events))
        )
        command = _celery_command("bench.noop_task", names.queue, [])
        with Workers(command, _bench_env(names, redis_url, None), 1) as workers:
            workers.wait_ready()
            meters = _Meters(workers, None)
            with RssSampler(workers.processes) as rss:
                meters.start()
                started = names.release(client)
                wait_until(
                    lambda: client.llen(names.queue) == 0, events / 50 + 60, "no-op drain", 0.005
                )
                ended = time.time()
                meters.stop()
            processes = len(workers.processes())
    finally:
        names.cleanup(client)
    seconds = ended - started
    worker_ms, redis_ms, _ = meters.per_event_ms(events)
    return Throughput(
        name="noop",
        events=events,
        seconds=round(seconds, 3),
        events_per_s=round(events / seconds, 1),
        worker_processes=processes,
        pool=f"prefork -c {psutil.cpu_count()} (default)",
        worker_cpu_ms_per_event=worker_ms,
        redis_cpu_ms_per_event=redis_ms,
        fake_cpu_ms_per_event=None,
        peak_rss_mb=round(rss.peak_mb, 1),
    )


def naive_throughput(events: int, redis_url: str, pool_args: Sequence[str]) -> Throughput:
    """Deliver `events` with the naive task on a pool (`[]` = default prefork)."""
    names = Names()
    client = redis.Redis.from_url(redis_url)
    label = " ".join(pool_args) or f"prefork -c {psutil.cpu_count()} (default)"
    try:
        with FakeServer(latency_ms=LATENCY_MS) as fake:
            bodies = (make_event(names.tag, i) for i in range(events))
            _prequeue_tasks(names, redis_url, NAIVE_TASK, bodies)
            command = _celery_command("bench.naive_task", names.queue, pool_args)
            with Workers(command, _bench_env(names, redis_url, fake), 1) as workers:
                workers.wait_ready()
                result = _drain(
                    "naive " + label, workers, fake, client, names, events, events / 10 + 60
                )
    finally:
        names.cleanup(client)
    result.pool = label
    result.worker_processes = 1
    return result


def eventq_throughput(
    events: int,
    redis_url: str,
    processes: int,
    settings: dict[str, str] | None = None,
    *,
    task_events: bool = False,
) -> Throughput:
    """Deliver `events` through eventq workers (`processes` of them) and measure."""
    names = Names()
    client = redis.Redis.from_url(redis_url)
    extra = {"EVENTQ_RATE_LIMIT": "100000/1s", **(settings or {})}
    try:
        with FakeServer(latency_ms=LATENCY_MS) as fake:
            env = eventq_env(names, fake, redis_url, **extra)
            _prequeue_eventq(env, names, (make_event(names.tag, i) for i in range(events)))
            command = _eventq_command(names, task_events)
            with Workers(command, env, processes) as workers:
                workers.wait_ready()
                result = _drain("eventq", workers, fake, client, names, events, events / 10 + 60)
    finally:
        names.cleanup(client)
    result.pool = "eventq" + (" -E (task events on)" if task_events else "")
    result.settings = {k: v for k, v in extra.items() if k != "EVENTQ_RATE_LIMIT"}
    return result


def _windows(
    records: list[dict[str, Any]], start: float, duration_s: float, window_s: float
) -> tuple[list[int], list[int]]:
    count = int(duration_s // window_s)
    delivered, rejected = [0] * count, [0] * count
    for record in records:
        at = record["answeredAt"] or record["receivedAt"]
        index = int((at - start) // window_s)
        if 0 <= index < count:
            if record["status"] == 200:
                delivered[index] += 1
            elif record["status"] == 429:
                rejected[index] += 1
    return delivered, rejected


def _rate_limit_result(
    name: str, records: list[dict[str, Any]], limit: int, window_s: float, duration_s: float
) -> RateLimitRun:
    start = min(r["receivedAt"] for r in records)
    inside = [r for r in records if (r["answeredAt"] or r["receivedAt"]) < start + duration_s]
    delivered, rejected = _windows(inside, start, duration_s, window_s)
    admitted = [r["answeredAt"] for r in inside if r["status"] not in (429, None)]
    per_second = [0.0] * int(duration_s)
    for record in inside:
        if record["status"] == 200:
            per_second[min(len(per_second) - 1, int(record["answeredAt"] - start))] += 1
    limited = sum(1 for r in inside if r["status"] == 429)
    return RateLimitRun(
        name=name,
        limit=limit,
        window_s=window_s,
        duration_s=duration_s,
        delivered_per_window=delivered,
        rejected_per_window=rejected,
        requests=len(inside),
        delivered=sum(delivered),
        rate_limited=limited,
        max_in_any_window=max_in_any_window(admitted, window_s),
        sustained_fraction=round(sum(delivered) / (limit * len(delivered)), 4),
        rate_limited_fraction=round(limited / max(1, len(inside)), 4),
        delivered_series=per_second,
    )


def _run_for(fake: FakeServer, duration_s: float) -> None:
    wait_until(lambda: int(fake.control.stats()["requests"]) > 0, 60, "the first request")
    time.sleep(duration_s + 1)


def eventq_rate_limit(
    duration_s: float, prequeued: int, redis_url: str, settings: dict[str, str] | None = None
) -> RateLimitRun:
    """Two eventq workers against a fake enforcing 100 per 10 s rolling, for `duration_s`."""
    names = Names()
    client = redis.Redis.from_url(redis_url)
    extra = {"EVENTQ_RATE_LIMIT": "100/10s", **(settings or {})}
    try:
        with FakeServer(latency_ms=LATENCY_MS, rate_limit="100/10s") as fake:
            env = eventq_env(names, fake, redis_url, **extra)
            _prequeue_eventq(env, names, (make_event(names.tag, i) for i in range(prequeued)))
            with Workers(_eventq_command(names), env, 2) as workers:
                workers.wait_ready()
                names.release(client)
                _run_for(fake, duration_s)
                records = fake.control.requests()
    finally:
        names.cleanup(client)
    return _rate_limit_result("eventq (2 workers)", records, 100, 10.0, duration_s)


def naive_rate_limit(duration_s: float, prequeued: int, redis_url: str) -> RateLimitRun:
    """The naive task on 32 threads against a fake enforcing 100 per 10 s, for `duration_s`."""
    names = Names()
    client = redis.Redis.from_url(redis_url)
    try:
        with FakeServer(latency_ms=LATENCY_MS, rate_limit="100/10s") as fake:
            bodies = (make_event(names.tag, i) for i in range(prequeued))
            _prequeue_tasks(names, redis_url, NAIVE_TASK, bodies)
            command = _celery_command(
                "bench.naive_task", names.queue, ["-P", "threads", "-c", "32"]
            )
            with Workers(command, _bench_env(names, redis_url, fake), 1) as workers:
                workers.wait_ready()
                names.release(client)
                _run_for(fake, duration_s)
                records = fake.control.requests()
                # Celery logs one ERROR line per task that ran out of retries
                gave_up = workers.log_text().count("raised unexpected: RetryableStatus")
    finally:
        names.cleanup(client)
    run = _rate_limit_result("naive (32 threads)", records, 100, 10.0, duration_s)
    run.gave_up = gave_up
    return run


def _park_jobs(client: redis.Redis, names: Names, jobs: int) -> None:
    """Write `jobs` retrying jobs into the retry schedule, due in 30 days (eventq's layout)."""
    keys = Keys(names.prefix)
    due = time.time() + 30 * 86_400
    template = JobEnvelope(event=MarketingEvent.model_validate(make_event(names.tag, 0)))
    for start in range(0, jobs, 2000):
        envelopes = [
            template.model_copy(update={"jobId": f"parked-{n}", "attempt": 2})
            for n in range(start, min(jobs, start + 2000))
        ]
        park_for_retry(client, keys, envelopes, due_at=due)


def _median_rss_mb(sampler: RssSampler, since: float) -> float:
    values = sorted(rss for at, rss in sampler.series if at >= since)
    return values[len(values) // 2] / 1e6 if values else 0.0


def schedule_rss(jobs: int, redis_url: str, settle_s: float) -> ScheduleRss:
    """Measure one worker's RSS idle, then with `jobs` waiting in the retry schedule."""
    names = Names()
    client = redis.Redis.from_url(redis_url)
    try:
        with FakeServer(latency_ms=0) as fake:
            env = eventq_env(names, fake, redis_url, EVENTQ_RATE_LIMIT="100000/1s")
            _prequeue_eventq(env, names, (make_event(names.tag, i) for i in range(200)))
            with Workers(_eventq_command(names), env, 1) as workers:
                workers.wait_ready()
                names.release(client)
                wait_until(lambda: int(fake.control.stats()["events"]) >= 200, 60, "warm-up")
                with RssSampler(workers.processes, every_s=0.2) as rss:
                    time.sleep(settle_s)
                    idle = _median_rss_mb(rss, time.time() - settle_s / 2)
                    before = int(client.info("memory")["used_memory"])
                    _park_jobs(client, names, jobs)
                    redis_mb = (int(client.info("memory")["used_memory"]) - before) / 1e6
                    loaded_since = time.time()
                    time.sleep(settle_s * 2)
                    loaded = max(v for at, v in rss.series if at >= loaded_since) / 1e6
    finally:
        names.cleanup(client)
    return ScheduleRss(
        jobs=jobs,
        idle_rss_mb=round(idle, 1),
        loaded_rss_mb=round(loaded, 1),
        growth_fraction=round(loaded / idle - 1, 4),
        redis_memory_mb=round(redis_mb, 1),
    )


def shared_budget(
    duration_s: float,
    prequeued: int,
    redis_url: str,
    *,
    sharing: bool,
    other_per_window: int = 30,
) -> SharedBudgetRun:
    """Two eventq workers deliver a backlog while another client of the same private app spends
    `other_per_window` of its 100 per 10 s (evenly, from one window before eventq starts) for
    `duration_s`; count both sides' 429s and eventq's deliveries in that time."""
    limit, window_s = 100, 10.0
    names = Names()
    client = redis.Redis.from_url(redis_url)
    extra = {"EVENTQ_RATE_LIMIT": "100/10s", "EVENTQ_RATE_LIMIT_SHARE": str(sharing).lower()}
    try:
        with FakeServer(latency_ms=LATENCY_MS, rate_limit="100/10s") as fake:
            env = eventq_env(names, fake, redis_url, **extra)
            _prequeue_eventq(env, names, (make_event(names.tag, i) for i in range(prequeued)))
            with Workers(_eventq_command(names), env, 2) as workers:
                workers.wait_ready()
                fake.control.start_other_client(fake.token, other_per_window, int(window_s * 1000))
                time.sleep(window_s)  # the other integration was there first
                before = fake.control.stats()["other_client"]
                start = names.release(client)
                time.sleep(duration_s)
                after = fake.control.stats()["other_client"]
                records = fake.control.requests()
                fake.control.stop_other_client(fake.token)
    finally:
        names.cleanup(client)
    inside = [r for r in records if start <= r["receivedAt"] < start + duration_s]
    delivered = [r for r in inside if r["status"] == 200]
    limited = sum(1 for r in inside if r["status"] == 429)
    windows = [0] * int(duration_s // window_s)
    for record in delivered:
        index = int((record["receivedAt"] - start) // window_s)
        if index < len(windows):
            windows[index] += 1
    sent, ok = after["sent"] - before["sent"], after["ok"] - before["ok"]
    left = (limit - other_per_window) * duration_s / window_s
    return SharedBudgetRun(
        name="eventq, sharing on" if sharing else "eventq, sharing off (baseline)",
        sharing=sharing,
        limit=limit,
        window_s=window_s,
        other_per_window=other_per_window,
        duration_s=duration_s,
        eventq_requests=len(inside),
        eventq_delivered=len(delivered),
        eventq_rate_limited=limited,
        eventq_429_fraction=round(limited / max(1, len(inside)), 4),
        other_sent=sent,
        other_ok=ok,
        other_kept_fraction=round(ok / max(1, sent), 4),
        eventq_share_of_left=round(len(delivered) / left, 4),
        eventq_per_window=windows,
    )
