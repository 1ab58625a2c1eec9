"""How a producer packs jobs into messages, and how a pack is summarised for Flower (no Redis)."""

from __future__ import annotations

from typing import Literal

from eventq.messaging import pack_summary
from eventq.schema import JobEnvelope, MarketingEvent
from eventq.settings import Settings
from producers.enqueue import _packs
from tests.conftest import valid_event


def envelope(n: int, priority: Literal["live", "bulk"] = "live") -> JobEnvelope:
    return JobEnvelope(event=MarketingEvent.model_validate(valid_event(n)), priority=priority)


def test_jobs_are_packed_per_queue_in_order_at_most_pack_size_to_a_message() -> None:
    # Given 5 live jobs and 2 bulk jobs, interleaved, and packs of 2
    settings = Settings(pack_size=2)
    jobs = [envelope(1), envelope(2, "bulk"), envelope(3), envelope(4), envelope(5, "bulk")]
    jobs += [envelope(6), envelope(7)]
    # When they are packed
    packs = _packs(jobs, settings)
    # Then each message holds one queue's jobs, in their order, two at most
    numbers = [[e.event.externalEventId for e in pack] for pack in packs]
    assert numbers == [["evt-1", "evt-3"], ["evt-4", "evt-6"], ["evt-7"], ["evt-2", "evt-5"]]


def test_a_pack_size_of_one_gives_one_message_per_job() -> None:
    jobs = [envelope(n) for n in range(3)]
    assert [len(pack) for pack in _packs(jobs, Settings(pack_size=1))] == [1, 1, 1]


def test_the_flower_summary_names_the_count_and_the_first_and_last_events_only() -> None:
    jobs = [envelope(n) for n in range(1, 51)]
    assert pack_summary(jobs) == "50 events: acct-1/evt-1 … acct-1/evt-50"
    assert "cp-value" not in pack_summary(jobs)  # custom property values never shown
