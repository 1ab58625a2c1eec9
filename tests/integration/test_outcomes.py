"""The outcome stream: one entry per ended job, read once per consumer group (real worker)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import redis

from eventq.keys import Keys
from eventq.outcomes import parse_entry
from fake_hubspot.control import FakeHubSpot
from producers.enqueue import Producer
from tests.conftest import Stack, valid_event
from tests.integration.helpers import wait_state

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "outcome_consumer.py"


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("outcome_consumer", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_ended_job_adds_one_outcome_that_a_consumer_group_reads_once(
    stack: Stack, fake: FakeHubSpot, redis_client: redis.Redis
) -> None:
    # Given a worker, one event HubSpot accepts and one it refuses (400)
    fake.refuse_event("evt-2")
    stack.start_worker(concurrency=4)
    producer = Producer(stack.settings)
    delivered_id, _ = producer.enqueue(valid_event(1))
    refused_id, _ = producer.enqueue(valid_event(2))
    # When both jobs end
    delivered = wait_state(stack, delivered_id, "delivered")
    dead = wait_state(stack, refused_id, "dead_lettered")
    # Then the stream holds exactly one entry per ended job, with its outcome
    stream = Keys(stack.settings.key_prefix).outcomes
    entries = [parse_entry(i, f) for i, f in redis_client.xrange(stream)]
    by_job = {e.outcome.jobId: e.outcome for e in entries}
    assert len(entries) == 2
    assert set(by_job) == {delivered_id, refused_id}
    ok, refused = by_job[delivered_id], by_job[refused_id]
    assert (ok.state, ok.objectId, ok.externalEventId, ok.attempts) == (
        "delivered",
        delivered.objectId,
        "evt-1",
        1,
    )
    assert ok.deadLetter is None
    assert refused.state == "dead_lettered"
    assert refused.deadLetter is not None
    assert (refused.deadLetter.id, refused.deadLetter.reason) == (dead.deadLetterId, "rejected")
    assert refused.deadLetter.httpStatus == 400
    # and the example consumer's group sees each once: a second read of the group finds none
    example = _example()
    example.ensure_group(redis_client, stream, "billing")
    first = list(example.read_outcomes(redis_client, stream, "billing", "c1", block_ms=50))
    for entry_id, _ in first:
        redis_client.xack(stream, "billing", entry_id)
    again = list(example.read_outcomes(redis_client, stream, "billing", "c2", block_ms=50))
    assert sorted(o["jobId"] for _, o in first) == sorted([delivered_id, refused_id])
    assert again == []
    # while another group sees them all again, and a reader that died before acknowledging
    # them reads them again when it restarts under the same name
    example.ensure_group(redis_client, stream, "audit")
    other = list(example.read_outcomes(redis_client, stream, "audit", "a1", block_ms=50))
    restarted = list(example.read_outcomes(redis_client, stream, "audit", "a1", block_ms=50))
    assert len(other) == 2
    assert restarted == other
