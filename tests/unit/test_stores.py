"""Redis stores against the real Redis (`real_redis`, `redis_client`): job claims, the retry
schedule's leases, DLQ paging."""

from __future__ import annotations

import time

import pytest
import redis
import redis.asyncio as aioredis

from eventq.dead_letters import DeadLetterFilter, DeadLetterStore, queue_add_entry
from eventq.jobs import JobStore, create_job, job_ids_starting, mark_published
from eventq.keys import Keys
from eventq.records import AttemptRecord
from eventq.schema import JobEnvelope, MarketingEvent
from tests.conftest import dead_letter_entry, valid_event
from worker.recovery import RecoverySweep
from worker.retry_schedule import ScheduleMover


@pytest.fixture
def keys(key_prefix: str) -> Keys:
    return Keys(key_prefix)


@pytest.fixture
async def store(real_redis: aioredis.Redis, keys: Keys) -> JobStore:
    return JobStore(real_redis, keys, ledger_ttl_s=60, job_ttl_s=60)


def envelope(n: int = 1, attempt: int = 1) -> JobEnvelope:
    return JobEnvelope(event=MarketingEvent.model_validate(valid_event(n)), attempt=attempt)


async def begin(store: JobStore, env: JobEnvelope) -> str:
    begun = await store.begin(
        env, raw_envelope=env.model_dump_json(), lock_ttl_ms=5000, now=time.time()
    )
    return begun.status


async def test_an_attempt_can_be_claimed_once_and_a_second_copy_is_refused(store: JobStore) -> None:
    env = envelope()
    assert await begin(store, env) == "ok"
    assert await begin(store, env) == "locked"


async def test_a_message_for_an_older_attempt_is_stale(store: JobStore) -> None:
    env = envelope()
    assert await begin(store, env) == "ok"
    record = AttemptRecord(attempt=1, at=time.time(), outcome="retry")
    await store.reschedule(
        env.next_attempt(),
        due_at=time.time(),
        attempts=1,
        verify=False,
        record=record,
        last_error="x",
    )
    assert await begin(store, env) == "stale"
    assert await begin(store, env.next_attempt()) == "ok"


async def test_a_delivered_job_is_done_for_every_later_copy(store: JobStore) -> None:
    env = envelope()
    await begin(store, env)
    await store.mark_delivered(
        env, "42", AttemptRecord(attempt=1, at=time.time(), outcome="delivered"), attempts=1
    )
    assert await begin(store, env) == "done"
    # and another job carrying the same event learns from the ledger that it is already there
    twin = envelope()
    begun = await store.begin(
        twin, raw_envelope=twin.model_dump_json(), lock_ttl_ms=5000, now=time.time()
    )
    assert (begun.status, begun.in_ledger, begun.delivered_object_id) == ("ok", True, "42")


async def test_a_job_delivered_without_an_object_id_shows_none_and_is_in_the_ledger(
    store: JobStore,
) -> None:
    # Given a job HubSpot accepted with an answer naming no id
    env = envelope()
    await begin(store, env)
    record = AttemptRecord(attempt=1, at=time.time(), outcome="delivered")
    await store.mark_delivered(env, None, record, attempts=1)
    # Then its status has no objectId, and a twin learns from the ledger that it is delivered
    status = await store.get(env.jobId)
    assert status is not None
    assert (status.state, status.objectId) == ("delivered", None)
    twin = envelope()
    begun = await store.begin(
        twin, raw_envelope=twin.model_dump_json(), lock_ttl_ms=5000, now=time.time()
    )
    assert (begun.status, begun.in_ledger, begun.delivered_object_id) == ("ok", True, None)


async def test_a_job_delivered_after_a_failed_attempt_shows_the_last_attempt_and_no_error(
    store: JobStore,
) -> None:
    # Given a job whose first attempt got a 503 and was rescheduled
    env = envelope()
    await begin(store, env)
    failed = AttemptRecord(attempt=1, at=time.time(), outcome="retry", httpStatus=503)
    await store.reschedule(
        env.next_attempt(),
        due_at=time.time(),
        attempts=1,
        verify=True,
        record=failed,
        last_error="HTTP 503",
    )
    retrying = await store.get(env.jobId)
    assert retrying is not None
    assert (retrying.lastError, retrying.lastStatus, retrying.lastAttempt) == ("HTTP 503", 503, 1)
    # When its second attempt is delivered
    await begin(store, env.next_attempt())
    done = AttemptRecord(attempt=2, at=time.time(), outcome="delivered", httpStatus=200)
    await store.mark_delivered(env.next_attempt(), "7", done, attempts=2)
    # Then its status comes from that attempt: no error left from the first
    status = await store.get(env.jobId)
    assert status is not None
    assert (status.state, status.attempts, status.lastAttempt) == ("delivered", 2, 2)
    assert (status.lastStatus, status.lastError) == (200, None)


async def test_an_attempt_interrupted_mid_way_is_verified_next_time(store: JobStore) -> None:
    env = envelope()
    await begin(store, env)
    await store.release(env.jobId)  # the worker died: its lock is gone, the state is in_progress
    begun = await store.begin(
        env, raw_envelope=env.model_dump_json(), lock_ttl_ms=5000, now=time.time()
    )
    assert begun.status == "ok"
    assert begun.verify


def test_the_same_event_enqueued_twice_gives_the_same_job(
    keys: Keys, redis_client: redis.Redis
) -> None:
    first = create_job(redis_client, keys, envelope(5), dedupe_ttl_s=60)
    second = create_job(redis_client, keys, envelope(5), dedupe_ttl_s=60)
    assert not first.duplicate
    assert first.needs_publish
    assert (second.job_id, second.duplicate) == (first.job_id, True)
    assert not second.needs_publish  # within the grace period: its producer is publishing it


def test_an_unpublished_job_is_published_by_one_later_duplicate(
    keys: Keys, redis_client: redis.Redis
) -> None:
    # Given a job recorded a minute ago whose producer died before publishing it
    first = create_job(redis_client, keys, envelope(7), dedupe_ttl_s=60)
    redis_client.hset(keys.job(first.job_id), "createdAt", time.time() - 60)
    # When the same event is enqueued again, twice
    again = create_job(redis_client, keys, envelope(7), dedupe_ttl_s=60)
    third = create_job(redis_client, keys, envelope(7), dedupe_ttl_s=60)
    # Then the first repeat publishes it, the second does not
    assert (again.duplicate, again.needs_publish) == (True, True)
    assert (third.duplicate, third.needs_publish) == (True, False)


def test_a_duplicate_of_a_published_job_needs_no_publish(
    keys: Keys, redis_client: redis.Redis
) -> None:
    first = create_job(redis_client, keys, envelope(6), dedupe_ttl_s=60)
    mark_published(redis_client, keys, [first.job_id])
    second = create_job(redis_client, keys, envelope(6), dedupe_ttl_s=60)
    assert second.duplicate
    assert not second.needs_publish


def test_the_mover_publishes_due_jobs_once_and_leaves_future_ones(
    keys: Keys, redis_client: redis.Redis
) -> None:
    published: list[str] = []
    for n, due in [(1, time.time() - 1), (2, time.time() - 1), (3, time.time() + 60)]:
        env = envelope(n)
        redis_client.set(keys.job_envelope(env.jobId), env.to_json())
        redis_client.zadd(keys.schedule, {env.jobId: due})
    mover = ScheduleMover(redis_client, keys, lambda e: published.append(e.event.externalEventId))
    other = ScheduleMover(redis_client, keys, lambda e: published.append(e.event.externalEventId))
    assert mover.move_due() + other.move_due() == 2
    assert sorted(published) == ["evt-1", "evt-2"]
    assert redis_client.zcard(keys.schedule) == 1


def test_a_mover_that_fails_to_publish_leaves_the_job_for_another(
    keys: Keys, redis_client: redis.Redis
) -> None:
    env = envelope(1)
    redis_client.set(keys.job_envelope(env.jobId), env.to_json())
    redis_client.zadd(keys.schedule, {env.jobId: time.time() - 1})

    def broken(_: JobEnvelope) -> None:
        raise ConnectionError("broker down")

    published: list[JobEnvelope] = []
    assert ScheduleMover(redis_client, keys, broken, lease_s=0.2).move_due() == 0
    assert ScheduleMover(redis_client, keys, published.append).move_due() == 0  # still leased
    time.sleep(0.3)
    assert ScheduleMover(redis_client, keys, published.append).move_due() == 1
    assert [e.jobId for e in published] == [env.jobId]


async def test_dlq_pages_are_newest_first_filtered_and_complete(
    keys: Keys, store: JobStore, redis_client: redis.Redis
) -> None:
    now = time.time()
    for n in range(450):
        rejected = n % 3 != 0
        entry = dead_letter_entry(
            valid_event(n),
            entry_id=f"dl-{n}",
            job_id=f"job-{n}",
            reason="rejected" if rejected else "invalid",
            http_status=400 if rejected else None,
            at=now + n / 1000,
        )
        await store.mark_dead_lettered(entry.jobId, entry, entry.attempts[-1])
    dlq = DeadLetterStore(redis_client, keys)
    seen: list[str] = []
    cursor = None
    while True:
        page = dlq.page(DeadLetterFilter(reason="rejected"), limit=70, cursor=cursor)
        seen += [e.id for e in page.entries]
        cursor = page.next_cursor
        if cursor is None:
            break
    expected = [f"dl-{n}" for n in reversed(range(450)) if n % 3]
    assert seen == expected
    assert dlq.page(DeadLetterFilter(text='evt-7"'), limit=10).entries[0].id == "dl-7"
    assert dlq.page(DeadLetterFilter(http_status=400), limit=500).entries[-1].id == "dl-1"
    assert dlq.delete("dl-1")
    assert not dlq.delete("dl-1")
    assert dlq.count() == 449


def test_the_sweep_republishes_a_job_whose_message_was_lost_and_only_that(
    keys: Keys, redis_client: redis.Redis
) -> None:
    lost, busy, waiting = envelope(1), envelope(2), envelope(3)
    for env in (lost, busy, waiting):
        create_job(redis_client, keys, env, dedupe_ttl_s=60)
        redis_client.zadd(keys.unfinished, {env.jobId: time.time() - 100})  # no progress for 100 s
    redis_client.set(keys.job_lock(busy.jobId), "worker")  # a worker is on it
    depth = {lost.jobId: 0, waiting.jobId: 5}  # `waiting` sits behind a backlog
    published: list[JobEnvelope] = []
    sweep = RecoverySweep(
        redis_client, keys, published.append, lambda e: depth.get(e.jobId, 0), stale_after_s=30
    )
    assert sweep.sweep() == 1
    assert [(e.jobId, e.attempt) for e in published] == [(lost.jobId, 2)]
    assert redis_client.hget(keys.job(lost.jobId), "attempt") == b"2"
    assert sweep.sweep() == 0  # one sweep per interval, across processes


def test_jobs_waiting_behind_a_backlog_do_not_hide_a_lost_job_from_later_sweeps(
    keys: Keys, redis_client: redis.Redis
) -> None:
    # Given 5 stale jobs waiting behind a backlog, older than a lost one, and batches of 5
    waiting = [envelope(n) for n in range(5)]
    lost = envelope(9)
    for age, env in enumerate([*waiting, lost]):
        create_job(redis_client, keys, env, dedupe_ttl_s=60)
        redis_client.zadd(keys.unfinished, {env.jobId: time.time() - 200 + age})
    depth = {env.jobId: 3 for env in waiting}
    published: list[JobEnvelope] = []

    def sweep() -> int:
        redis_client.delete(keys.sweep_lock)  # as if the interval had passed
        return RecoverySweep(
            redis_client,
            keys,
            published.append,
            lambda e: depth.get(e.jobId, 0),
            stale_after_s=30,
            batch=5,
        ).sweep()

    # When the sweep runs twice
    first, second = sweep(), sweep()
    # Then the first looks at the 5 waiting ones and sets them aside, the second finds the lost one
    assert (first, second) == (0, 1)
    assert [e.jobId for e in published] == [lost.jobId]


def test_the_sweep_forgets_finished_and_scheduled_jobs(
    keys: Keys, redis_client: redis.Redis
) -> None:
    done, parked = envelope(1), envelope(2)
    for env in (done, parked):
        create_job(redis_client, keys, env, dedupe_ttl_s=60)
        redis_client.zadd(keys.unfinished, {env.jobId: time.time() - 100})
    redis_client.hset(keys.job(done.jobId), "state", "delivered")
    redis_client.zadd(keys.schedule, {parked.jobId: time.time() + 60})
    published: list[JobEnvelope] = []
    assert (
        RecoverySweep(redis_client, keys, published.append, lambda e: 0, stale_after_s=30).sweep()
        == 0
    )
    assert published == []
    assert redis_client.zcard(keys.unfinished) == 0


async def deliver(store: JobStore, env: JobEnvelope, *, at: float) -> None:
    """Run the job's first attempt to delivered, as a worker does, at time `at`."""
    assert await begin(store, env) == "ok"
    record = AttemptRecord(attempt=1, at=at, outcome="delivered", httpStatus=200)
    await store.mark_delivered(env, "obj-1", record, attempts=1)


async def test_an_event_delivered_within_the_dedupe_window_is_a_duplicate_saying_when(
    keys: Keys, redis_client: redis.Redis, store: JobStore
) -> None:
    # Given an event whose job was delivered 60 s ago, and a 600 s dedupe window
    first = create_job(redis_client, keys, envelope(8), dedupe_ttl_s=60, dedupe_window_s=600)
    delivered_at = time.time() - 60
    await deliver(store, envelope(8).model_copy(update={"jobId": first.job_id}), at=delivered_at)
    # When the same event is enqueued again
    again = create_job(redis_client, keys, envelope(8), dedupe_ttl_s=60, dedupe_window_s=600)
    # Then it is the same job, delivered at that time
    assert (again.job_id, again.duplicate) == (first.job_id, True)
    assert again.state == "delivered"
    assert again.updated_at == pytest.approx(delivered_at)


async def test_an_event_delivered_before_the_dedupe_window_gets_a_new_job_sent_with_put(
    keys: Keys, redis_client: redis.Redis, store: JobStore
) -> None:
    # Given an event whose job was delivered 60 s ago, and a 30 s dedupe window
    first = create_job(redis_client, keys, envelope(9), dedupe_ttl_s=60, dedupe_window_s=30)
    await deliver(
        store, envelope(9).model_copy(update={"jobId": first.job_id}), at=time.time() - 60
    )
    # When the same event is enqueued again
    again = create_job(redis_client, keys, envelope(9), dedupe_ttl_s=60, dedupe_window_s=30)
    # Then it is a new job, whose attempt is sent again (not answered by the delivered
    # ledger) with create-or-update (verify: HubSpot may hold the event)
    assert not again.duplicate
    assert again.job_id != first.job_id
    renewed = envelope(9).model_copy(update={"jobId": again.job_id})
    begun = await store.begin(
        renewed, raw_envelope=renewed.model_dump_json(), lock_ttl_ms=5000, now=time.time()
    )
    assert (begun.status, begun.in_ledger, begun.verify) == ("ok", False, True)


async def test_a_live_job_is_a_duplicate_whatever_the_window_and_an_idempotency_key_outlives_it(
    keys: Keys, redis_client: redis.Redis, store: JobStore
) -> None:
    # Given a window of 0 s: an event is refused only while its job is live
    live = create_job(redis_client, keys, envelope(10), dedupe_ttl_s=60, dedupe_window_s=0)
    assert create_job(redis_client, keys, envelope(10), dedupe_ttl_s=60).state == "queued"
    # and a job created with an idempotency key, then delivered
    keyed = create_job(redis_client, keys, envelope(11), dedupe_ttl_s=60, idempotency_hash="h-11")
    await deliver(
        store, envelope(11).model_copy(update={"jobId": keyed.job_id}), at=time.time() - 60
    )
    # When the same key comes again, past the window
    again = create_job(redis_client, keys, envelope(11), dedupe_ttl_s=60, idempotency_hash="h-11")
    # Then the key still answers its job
    assert not live.duplicate
    assert (again.job_id, again.duplicate, again.state) == (keyed.job_id, True, "delivered")


def test_jobs_are_found_by_the_start_of_their_id_and_their_history_or_lock_is_not_a_job(
    keys: Keys, redis_client: redis.Redis
) -> None:
    # Given three jobs, two of whose ids share their first 8 characters, one with a history
    ids = ["a1b2c3d4" + "0" * 24, "a1b2c3d4" + "1" * 24, "ffff0000" + "2" * 24]
    for job_id in ids:
        create_job(
            redis_client,
            keys,
            envelope(int(job_id[-1]) + 20).model_copy(update={"jobId": job_id}),
            dedupe_ttl_s=60,
        )
    redis_client.rpush(keys.job_history(ids[2]), "{}")
    # When they are looked up by a prefix
    # Then each prefix gives the jobs whose ids start with it, and only jobs
    assert job_ids_starting(redis_client, keys, "a1b2c3", 10) == ids[:2]
    assert job_ids_starting(redis_client, keys, "a1b2c3d41", 10) == ids[1:2]
    assert job_ids_starting(redis_client, keys, "ffff00", 10) == ids[2:]
    assert job_ids_starting(redis_client, keys, "a1b2c3", 1) in (ids[:1], ids[1:2])
    # and a glob character matches only itself
    assert job_ids_starting(redis_client, keys, "a1b2*", 10) == []


def test_dead_letters_are_found_by_the_start_of_their_id_in_the_dlq_index(
    keys: Keys, redis_client: redis.Redis
) -> None:
    store = DeadLetterStore(redis_client, keys)
    ids = ["dead0001" + "a" * 24, "dead0001" + "b" * 24, "beef0002" + "c" * 24]
    with redis_client.pipeline() as pipe:
        for entry_id in ids:
            queue_add_entry(pipe, keys, dead_letter_entry(valid_event(1), entry_id=entry_id))
        pipe.execute()

    assert store.ids_starting("dead00", 10) == ids[:2]
    assert store.ids_starting("dead0001b", 10) == ids[1:2]
    assert store.ids_starting("beef", 10) == ids[2:]
    assert store.ids_starting("[d]ead", 10) == []
