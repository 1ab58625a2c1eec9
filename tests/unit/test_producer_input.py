"""Producers reject bad options as they reject bad events: by field, before touching Redis."""

from __future__ import annotations

import pytest

from eventq.settings import load_settings
from producers.enqueue import Producer, RejectedEvent
from tests.conftest import valid_event


def test_a_blank_portal_id_is_rejected_naming_the_field_not_raised_as_a_crash() -> None:
    producer = Producer(load_settings(redis_url="redis://127.0.0.1:1/0"))  # never reached
    with pytest.raises(RejectedEvent) as caught:
        producer.enqueue(valid_event(), portal_id=" ")
    assert caught.value.errors[0].field == "portalId"
    results = producer.enqueue_many([valid_event(1), valid_event(2)], portal_id=" ")
    assert [r.errors[0].field for r in results] == ["portalId", "portalId"]
