"""worker.pool.Lanes and worker.batcher.is_batched: which received jobs the pool starts."""

from __future__ import annotations

from eventq.settings import Settings
from tests.conftest import valid_event
from worker.batcher import is_batched
from worker.pool import Lanes


def test_jobs_sent_alone_stay_within_the_concurrency_while_batch_members_fill_the_rest() -> None:
    # Given room for 10 jobs, at most 2 of them sent alone, and 3 single and 4 batched jobs
    lanes: Lanes[str] = Lanes(limit=10, alone_limit=2)
    for name in ("a1", "a2", "a3"):
        lanes.add(name, batched=False)
    for name in ("b1", "b2", "b3", "b4"):
        lanes.add(name, batched=True)
    # When the pool starts what it may
    started = [name for name, _ in lanes.take()]
    # Then every batch member runs, and only 2 of the single jobs
    assert started == ["b1", "b2", "b3", "b4", "a1", "a2"]
    assert lanes.running == 6
    assert lanes.take() == []
    # And the third single job starts once one of them finished
    lanes.finished(batched=False)
    assert lanes.take() == [("a3", False)]


def test_the_whole_limit_bounds_both_lanes_together() -> None:
    # Given room for 3 jobs in all, and 5 batch members and 1 single job waiting
    lanes: Lanes[int] = Lanes(limit=3, alone_limit=3)
    for n in range(5):
        lanes.add(n, batched=True)
    lanes.add(99, batched=False)
    # Then 3 start; each one finishing lets one more in, in order
    assert [n for n, _ in lanes.take()] == [0, 1, 2]
    lanes.finished(batched=True)
    assert lanes.take() == [(3, True)]
    assert lanes.running == 3


def test_only_bulk_jobs_in_upsert_mode_count_as_batched_unless_live_batching_is_on() -> None:
    bulk = {"jobId": "j1", "event": valid_event(), "priority": "bulk"}
    live = {"jobId": "j2", "event": valid_event(), "priority": "live"}
    upsert, create = Settings(bulk_mode="upsert"), Settings(bulk_mode="create")
    both = Settings(bulk_mode="upsert", live_batching=True)
    assert is_batched(upsert, bulk)
    assert not is_batched(upsert, live)
    assert not is_batched(upsert, valid_event())  # a bare event is a live job
    assert not is_batched(create, bulk)
    assert is_batched(both, live)
