"""Counts kept on write for the overview, against the real Redis: the DLQ by reason and by group
(reason + HubSpot's message) through add, refused replay and delete, and outcomes per minute."""

from __future__ import annotations

import time

import pytest
import redis
import redis.asyncio as aioredis

from eventq.activity import read_minutes
from eventq.dead_letters import (
    MESSAGE_CHARS,
    DeadLetterFilter,
    DeadLetterGroup,
    DeadLetterStore,
    read_counts,
)
from eventq.jobs import JobStore
from eventq.keys import Keys
from eventq.records import AttemptRecord, HubSpotErrorInfo
from eventq.schema import JobEnvelope, MarketingEvent
from tests.conftest import dead_letter_entry, valid_event

ORGANIZER = "eventOrganizer is not allowed here"


@pytest.fixture
def keys(key_prefix: str) -> Keys:
    return Keys(key_prefix)


@pytest.fixture
def jobs(real_redis: aioredis.Redis, keys: Keys) -> JobStore:
    return JobStore(real_redis, keys, ledger_ttl_s=60, job_ttl_s=60)


async def dead_letter(jobs: JobStore, n: int, reason: str, message: str) -> str:
    entry = dead_letter_entry(
        valid_event(n),
        reason=reason,
        message=message,
        http_status=400,  # type: ignore[arg-type]
    )
    await jobs.mark_dead_lettered(entry.jobId, entry, entry.attempts[-1])
    return entry.id


async def test_dlq_counts_follow_adds_changes_and_deletes_without_reading_entries(
    jobs: JobStore, keys: Keys, redis_client: redis.Redis
) -> None:
    # Given five entries in two groups of `rejected` and one `invalid`
    ids = [await dead_letter(jobs, n, "rejected", ORGANIZER) for n in range(3)]
    other = await dead_letter(jobs, 3, "rejected", "  startDateTime\n must be   ISO ")
    await dead_letter(jobs, 4, "invalid", "eventName: Field required")
    store = DeadLetterStore(redis_client, keys)
    # Then the counts say so, largest group first, the message on one line
    counts = read_counts(redis_client, keys)
    assert counts.total == 5
    assert counts.by_reason == {"rejected": 4, "invalid": 1}
    assert counts.groups[0] == DeadLetterGroup("rejected", ORGANIZER, 3)
    assert DeadLetterGroup("rejected", "startDateTime must be ISO", 1) in counts.groups
    # When one entry's replay is refused (its message changes) and another is deleted twice
    refused = store.get(ids[0])
    assert refused is not None
    store.save(refused.model_copy(update={"error": HubSpotErrorInfo(message="replay refused")}))
    assert store.delete(other)
    assert not store.delete(other)
    # Then the refused one moved group, the deleted one's group is gone, nothing went negative
    counts = read_counts(redis_client, keys)
    assert counts.total == 4
    assert counts.by_reason == {"rejected": 3, "invalid": 1}
    assert {(g.reason, g.message, g.count) for g in counts.groups} == {
        ("rejected", ORGANIZER, 2),
        ("rejected", "replay refused", 1),
        ("invalid", "eventName: Field required", 1),
    }
    # and a group's message selects exactly its entries
    matching = store.iter_matching(DeadLetterFilter(reason="rejected", message=ORGANIZER))
    assert sorted(e.id for e in matching) == sorted(ids[1:])


async def test_saving_an_entry_deleted_meanwhile_neither_restores_it_nor_counts_it(
    jobs: JobStore, keys: Keys, redis_client: redis.Redis
) -> None:
    entry_id = await dead_letter(jobs, 1, "rejected", ORGANIZER)
    store = DeadLetterStore(redis_client, keys)
    entry = store.get(entry_id)
    assert entry is not None
    assert store.delete(entry_id)
    store.save(entry)
    assert store.get(entry_id) is None
    assert read_counts(redis_client, keys).groups == []


async def test_a_long_message_is_grouped_by_its_start(
    jobs: JobStore, keys: Keys, redis_client: redis.Redis
) -> None:
    await dead_letter(jobs, 1, "rejected", "x" * (MESSAGE_CHARS + 50))
    await dead_letter(jobs, 2, "rejected", "x" * (MESSAGE_CHARS + 10))
    assert read_counts(redis_client, keys).groups[0].count == 2


async def test_outcomes_are_counted_in_the_minute_they_happen(
    jobs: JobStore, keys: Keys, real_redis: aioredis.Redis
) -> None:
    # Given a job delivered, one retried, one parked by the limiter and one dead-lettered now
    now = time.time()
    env = JobEnvelope(event=MarketingEvent.model_validate(valid_event(1)))
    delivered = AttemptRecord(attempt=1, at=now, outcome="delivered")
    await jobs.mark_delivered(env, "obj-1", delivered, attempts=1)
    for outcome in ("retry", "waiting"):
        record = AttemptRecord(attempt=1, at=now, outcome=outcome)
        await jobs.reschedule(
            env.next_attempt(),
            due_at=now + 60,
            attempts=1,
            verify=False,
            record=record,
            last_error=None,
        )
    await dead_letter(jobs, 2, "rejected", ORGANIZER)
    # When the last hour is read
    minutes = await read_minutes(real_redis, keys, now=now)
    # Then it has 60 minutes, oldest first, and this one counts each outcome once
    assert len(minutes) == 60
    assert minutes[-1].minute == int(now // 60) * 60
    assert minutes[0].minute == minutes[-1].minute - 59 * 60
    last = minutes[-1]
    assert (last.delivered, last.retried, last.dead_lettered) == (1, 1, 1)
    assert sum(m.delivered + m.retried + m.dead_lettered for m in minutes[:-1]) == 0
    ttl = await real_redis.ttl(keys.activity(int(now // 60)))
    assert 3600 < ttl <= 7200


def test_recount_rebuilds_the_counts_of_entries_stored_before_they_were_kept(
    keys: Keys, redis_client: redis.Redis
) -> None:
    # Given three entries stored the old way (entry and index only, no counts) and a stale count
    for n in range(3):
        entry = dead_letter_entry(valid_event(n), reason="rejected", message=ORGANIZER)
        redis_client.set(keys.dlq_entry(entry.id), entry.model_dump_json())
        redis_client.zadd(keys.dlq, {entry.id: entry.deadLetteredAt})
    redis_client.hset(keys.dlq_reasons, "auth", 5)
    assert read_counts(redis_client, keys).groups == []
    # When the counts are rebuilt
    counts = DeadLetterStore(redis_client, keys).recount()
    # Then they are the entries' own, and what the overview reads
    assert counts.by_reason == {"rejected": 3}
    assert counts.groups == [DeadLetterGroup("rejected", ORGANIZER, 3)]
    assert read_counts(redis_client, keys) == counts
