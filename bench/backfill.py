"""Backfill: one backlog on the bulk queue against a fake HubSpot enforcing 100 requests per 10 s.

Three contenders, side by side in one run, each on the same backlog (20,000 events by default)
at 50 ms latency, the fake enforcing 100 requests per 10 s rolling per token:

- eventq bulk: one `eventq worker` command (default processes), bulk jobs gathered per rate-limit
  bucket into batch upserts (`EVENTQ_BULK_MODE=upsert`, the default);
- eventq single-event: the same command with `EVENTQ_BULK_MODE=create`, one request per event;
- the naive Celery task (`bench.naive_task`, 32 threads), one request per event, no limiter.

eventq bulk drains the whole backlog. The two single-event paths are bound to 10 requests per
second, so the backlog would take them over half an hour: they run for a fixed window
(`window_s`, from each one's first request) on the same backlog and are measured over it.
Rates are sustained: for a drain, events created at the fake per second between the 10th and
the 90th percentile of their creation times (start-up and tail left out); for a window (a
multiple of the limit's 10 s), events created in it / its length. Duplicates (an event created
twice) come from the fake's store; lost events and wrong records from every job's record
(state `delivered`, with the object id the fake gave its event).
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from bench.contenders import steady_rate
from bench.harness import (
    FakeServer,
    Names,
    Workers,
    eventq_worker_command,
    make_event,
    wait_until,
)
from bench.naive_task import NAIVE_TASK
from bench.scenarios import LATENCY_MS, _bench_env, _celery_command, _prequeue_tasks, eventq_env
from eventq.jobs import job_statuses
from eventq.keys import Keys
from eventq.settings import settings_from_env
from producers.enqueue import Producer

__all__ = ["BackfillRun", "backfill", "eventq_backfill", "naive_backfill"]

RATE_LIMIT = "100/10s"


@dataclass
class BackfillRun:
    """One contender's part of the backfill: its rate, the requests it used, what went wrong.

    `window_s` is None when the whole backlog was drained, else the window it was measured
    over (from its first request). `lost` and `records_wrong` are None where they cannot be
    told: `lost` for a window (the rest of the backlog is still queued), `records_wrong` for the
    naive task (it keeps no record).
    """

    name: str
    backlog: int
    window_s: float | None
    delivered: int
    seconds: float
    steady_events_per_s: float
    whole_run_events_per_s: float
    requests: int
    rate_limited: int
    events_per_request: float
    duplicates: int
    lost: int | None
    records_wrong: int | None
    worker_cpu_ms_per_event: float = 0.0
    created_per_s: list[int] = field(default_factory=list)  # from the first request on
    settings: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """Return the run as JSON-ready data."""
        return asdict(self)


@dataclass(frozen=True)
class _Seen:
    """What the fake saw of one contender: its writes and the events it holds."""

    requests: list[dict[str, Any]]
    events: list[dict[str, Any]]

    @property
    def start(self) -> float:
        """Return when the first request arrived (epoch s)."""
        return float(min(r["receivedAt"] for r in self.requests))

    def within(self, window_s: float | None) -> _Seen:
        """Return what happened in the first `window_s` after the first request (None: all)."""
        if window_s is None:
            return self
        end = self.start + window_s
        return _Seen(
            [r for r in self.requests if r["receivedAt"] < end],
            [e for e in self.events if e["createdAt"] < end],
        )

    def duplicates(self) -> int:
        """Return how many events exist more than once (same external ids)."""
        ids = Counter((e["externalAccountId"], e["externalEventId"]) for e in self.events)
        return sum(n - 1 for n in ids.values() if n > 1)

    def object_ids(self) -> dict[str, str]:
        """Return each created event's object id by its external event id."""
        return {str(e["externalEventId"]): str(e["objectId"]) for e in self.events}


def _result(name: str, backlog: int, window_s: float | None, seen: _Seen) -> BackfillRun:
    created = sorted(e["createdAt"] for e in seen.events)
    span = (created[-1] - seen.start) if created else 0.0
    seconds = window_s if window_s is not None else span
    requests = len(seen.requests)
    return BackfillRun(
        name=name,
        backlog=backlog,
        window_s=window_s,
        delivered=len(created),
        seconds=round(seconds, 2),
        steady_events_per_s=_steady(created, window_s),
        whole_run_events_per_s=round(len(created) / seconds, 1) if seconds > 0 else 0.0,
        requests=requests,
        rate_limited=sum(1 for r in seen.requests if r["status"] == 429),
        events_per_request=round(len(created) / requests, 1) if requests else 0.0,
        duplicates=0,
        lost=None,
        records_wrong=None,
        created_per_s=_per_second(created, seen.start, seconds),
    )


def _steady(created: list[float], window_s: float | None) -> float:
    """Return the sustained rate: over a window (a multiple of the limit's 10 s, so the
    limiter's first burst is paid back inside it), events / window; over a whole drain, the
    rate between the 10th and the 90th percentile of creations (start-up and tail left out)."""
    if window_s is not None:
        return round(len(created) / window_s, 1)
    return steady_rate(created) if len(created) > 10 else 0.0


def _per_second(times: list[float], start: float, seconds: float) -> list[int]:
    """Return how many of `times` fall in each second from `start` on, for `seconds`."""
    counts = [0] * max(1, math.ceil(seconds))
    for at in times:
        counts[min(len(counts) - 1, max(0, int(at - start)))] += 1
    return counts


def _enqueue_bulk(env: dict[str, str], names: Names, bodies: Iterable[Any]) -> dict[str, str]:
    """Queue `bodies` on the bulk queue, move them aside; return job id by external event id."""
    producer = Producer(settings_from_env(env))
    jobs: dict[str, str] = {}
    chunk: list[dict[str, Any]] = []
    for body in bodies:
        chunk.append(body)
        if len(chunk) == 2000:
            jobs.update(_enqueue_chunk(producer, chunk))
            chunk = []
    jobs.update(_enqueue_chunk(producer, chunk))
    names.hide(producer.redis, names.bulk_queue)
    return jobs


def _enqueue_chunk(producer: Producer, bodies: list[dict[str, Any]]) -> dict[str, str]:
    results = producer.enqueue_many(bodies, priority="bulk")
    rejected = [r for r in results if not r.accepted]
    if rejected:
        raise RuntimeError(f"{len(rejected)} benchmark events rejected: {rejected[0].errors}")
    return {str(b["externalEventId"]): str(r.job_id) for b, r in zip(bodies, results, strict=True)}


def _records_wrong(client: redis.Redis, prefix: str, expected: dict[str, str | None]) -> int:
    """Count the jobs (job id -> the object id its event got, None if it got none) whose record
    is not `delivered` with that object id."""
    job_ids = list(expected)
    statuses = job_statuses(client, Keys(prefix), job_ids)
    return sum(
        1
        for job_id, status in zip(job_ids, statuses, strict=True)
        if status is None or status.state != "delivered" or status.objectId != expected[job_id]
    )


def _wait(fake: FakeServer, events: int, window_s: float | None) -> None:
    """Wait until the fake holds `events` events, or for `window_s` after the first request."""
    if window_s is None:
        wait_until(
            lambda: int(fake.control.stats()["events"]) >= events,
            events / 50 + 120,
            f"{events} events created",
            every_s=0.2,
        )
        return
    wait_until(lambda: int(fake.control.stats()["requests"]) > 0, 60, "the first request")
    first = min(r["receivedAt"] for r in fake.control.requests())
    time.sleep(max(0.0, first + window_s - time.time()))  # the measured window itself


def _drive(
    workers: Workers,
    fake: FakeServer,
    client: redis.Redis,
    names: Names,
    queue: str,
    events: int,
    window_s: float | None,
) -> float:
    """Hand the backlog moved aside to `queue` once the workers are ready, wait for the end
    (`_wait`), warm-stop them (what is in flight finishes and is recorded); return the CPU
    seconds the workers used meanwhile."""
    workers.wait_ready()
    before = workers.cpu_s()
    names.release(client, queue)
    _wait(fake, events, window_s)
    used = workers.cpu_s() - before
    workers.stop(timeout_s=30)
    return used


def _seen(fake: FakeServer) -> _Seen:
    writes = [r for r in fake.control.requests() if r["method"] in ("POST", "PUT")]
    return _Seen(writes, fake.control.events())


def eventq_backfill(
    events: int, redis_url: str, *, bulk_mode: str, window_s: float | None = None
) -> BackfillRun:
    """Deliver a backlog of `events` bulk jobs with one `eventq worker` command (default
    processes) against the fake's 100 per 10 s, `bulk_mode` `upsert` or `create`; drain it all,
    or run for `window_s` only."""
    names = Names()
    client = redis.Redis.from_url(redis_url)
    extra = {"EVENTQ_RATE_LIMIT": RATE_LIMIT, "EVENTQ_BULK_MODE": bulk_mode}
    command = eventq_worker_command()
    processes = len(os.sched_getaffinity(0))
    try:
        with FakeServer(latency_ms=LATENCY_MS, rate_limit=RATE_LIMIT) as fake:
            env = eventq_env(names, fake, redis_url, **extra)
            jobs = _enqueue_bulk(env, names, (make_event(names.tag, i) for i in range(events)))
            with Workers(command, env, 1, ready_marks=processes) as workers:
                cpu_s = _drive(workers, fake, client, names, names.bulk_queue, events, window_s)
            seen = _seen(fake)
        object_ids = seen.object_ids()
        expected = {
            job_id: object_ids.get(event_id)
            for event_id, job_id in jobs.items()
            if window_s is None or event_id in object_ids
        }
        wrong = _records_wrong(client, names.prefix, expected)
    finally:
        names.cleanup(client)
    mode = "bulk (batch upsert)" if bulk_mode == "upsert" else "single-event (BULK_MODE=create)"
    run = _result(f"eventq {mode}, {processes} processes", events, window_s, seen.within(window_s))
    run.duplicates = seen.duplicates()
    run.worker_cpu_ms_per_event = round(cpu_s / max(1, run.delivered) * 1000, 2)
    run.records_wrong = wrong
    run.lost = None if window_s is not None else events - len(object_ids)
    run.settings = extra
    return run


def naive_backfill(events: int, redis_url: str, window_s: float) -> BackfillRun:
    """Run the naive task (32 threads) on a backlog of `events` for `window_s` and measure it."""
    names = Names()
    client = redis.Redis.from_url(redis_url)
    command = _celery_command("bench.naive_task", names.queue, ["-P", "threads", "-c", "32"])
    try:
        with FakeServer(latency_ms=LATENCY_MS, rate_limit=RATE_LIMIT) as fake:
            bodies = (make_event(names.tag, i) for i in range(events))
            _prequeue_tasks(names, redis_url, NAIVE_TASK, bodies)
            with Workers(command, _bench_env(names, redis_url, fake), 1) as workers:
                cpu_s = _drive(workers, fake, client, names, names.queue, events, window_s)
            seen = _seen(fake)
    finally:
        names.cleanup(client)
    run = _result("naive Celery task (32 threads)", events, window_s, seen.within(window_s))
    run.duplicates = seen.duplicates()
    run.worker_cpu_ms_per_event = round(cpu_s / max(1, run.delivered) * 1000, 2)
    return run


def backfill(events: int, window_s: float, redis_url: str) -> dict[str, Any]:
    """Run the three contenders in turn on a backlog of `events`; return the JSON."""
    bulk = eventq_backfill(events, redis_url, bulk_mode="upsert")
    single = eventq_backfill(events, redis_url, bulk_mode="create", window_s=window_s)
    naive = naive_backfill(events, redis_url, window_s)
    runs = {"eventq_bulk": bulk, "eventq_single": single, "naive": naive}
    out: dict[str, Any] = {name: run.as_json() for name, run in runs.items()}
    out["limit"] = {"requests": 100, "window_s": 10.0, "latency_ms": LATENCY_MS}
    return out
