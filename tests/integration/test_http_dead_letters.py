"""The DLQ admin API: filters, cursors, show, replay (dry run, patch, new payload), delete,
audit."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import redis

from eventq.keys import Keys
from eventq.schema import JobEnvelope
from eventq.settings import Settings
from fake_hubspot.control import FakeHubSpot
from producers.enqueue import Producer
from producers.replay import Replayer
from tests.conftest import Stack, valid_event
from tests.integration.helpers import send_raw, wait_state
from tests.integration.http_support import (
    ADMIN_KEY,
    Api,
    seed_dead_letter,
)


def without(field: str, n: int | str = 1, **changes: Any) -> dict[str, Any]:
    event = valid_event(n, **changes)
    del event[field]
    return event


def iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat()


def ids_of(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [e["id"] for e in response.json()["entries"]]


def test_the_list_filters_by_reason_status_time_range_and_text(stack: Stack, admin: Api) -> None:
    # Given entries of different reasons, statuses and times
    now = time.time()
    old = seed_dead_letter(stack.settings, without("eventOrganizer", "old"), at=now - 3600)
    invalid = seed_dead_letter(stack.settings, without("eventOrganizer", "gala"), at=now - 60)
    rejected = seed_dead_letter(
        stack.settings, valid_event("r"), reason="rejected", http_status=400, at=now - 30
    )
    # Then each filter narrows the newest-first list
    assert ids_of(admin.get("/v1/dead-letters")) == [rejected.id, invalid.id, old.id]
    assert ids_of(admin.get("/v1/dead-letters?reason=invalid")) == [invalid.id, old.id]
    assert ids_of(admin.get("/v1/dead-letters?httpStatus=400")) == [rejected.id]
    recent = {"since": iso(now - 120), "until": iso(now - 45)}
    assert ids_of(admin.get("/v1/dead-letters", params=recent)) == [invalid.id]
    assert ids_of(admin.get("/v1/dead-letters?text=GALA")) == [invalid.id]


def test_the_list_pages_with_a_cursor_without_gaps_or_repeats(stack: Stack, admin: Api) -> None:
    now = time.time()
    made = [seed_dead_letter(stack.settings, {"n": i}, at=now - i) for i in range(7)]
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(4):
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = admin.get("/v1/dead-letters", params=params).json()
        seen += [e["id"] for e in page["entries"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == [e.id for e in made]


def test_show_returns_the_payload_error_and_attempts(stack: Stack, admin: Api) -> None:
    entry = seed_dead_letter(stack.settings, without("eventOrganizer"), http_status=None)
    shown = admin.get(f"/v1/dead-letters/{entry.id}").json()
    assert shown["payload"]["externalEventId"] == "evt-1"
    assert shown["error"]["message"] == "eventOrganizer: Field required"
    assert [a["outcome"] for a in shown["attempts"]] == ["dead_letter"]
    assert admin.get("/v1/dead-letters/nope").status_code == 404


def test_a_dry_run_changes_nothing_and_names_the_bad_fields(stack: Stack, admin: Api) -> None:
    entry = seed_dead_letter(stack.settings, without("eventOrganizer"))
    answer = admin.post("/v1/dead-letters/replay", json={"ids": [entry.id], "dryRun": True})
    body = answer.json()
    assert body["dryRun"] is True
    assert body["counts"] == {"invalid": 1}
    assert body["results"][0]["errors"] == [
        {"field": "eventOrganizer", "message": "Field required"}
    ]
    patched = admin.post(
        "/v1/dead-letters/replay",
        json={"ids": [entry.id], "dryRun": True, "patch": {"eventOrganizer": "Acme"}},
    ).json()
    assert patched["results"][0]["status"] == "would_replay"
    assert admin.get(f"/v1/dead-letters/{entry.id}").status_code == 200


def test_edit_and_replay_revalidates_the_new_payload_before_enqueueing(
    stack: Stack, admin: Api
) -> None:
    # Given an invalid entry
    entry = seed_dead_letter(stack.settings, without("eventOrganizer"))
    # When an admin sends a new payload that is still wrong
    still_bad = dict(entry.payload, eventOrganizer="Acme", eventCancelled="nope")
    refused = admin.post("/v1/dead-letters/replay", json={"ids": [entry.id], "payload": still_bad})
    # Then nothing is enqueued and the entry stays, with the reason
    result = refused.json()["results"][0]
    assert result["status"] == "invalid"
    assert result["errors"][0]["field"] == "eventCancelled"
    kept = admin.get(f"/v1/dead-letters/{entry.id}").json()
    assert kept["error"]["message"].startswith("replay refused: eventCancelled")
    # When the payload is fixed (a field removed, one added)
    fixed = {k: v for k, v in still_bad.items() if k != "eventCancelled"}
    answer = admin.post("/v1/dead-letters/replay", json={"ids": [entry.id], "payload": fixed})
    # Then it is replayed under its old job id and the entry is gone
    result = answer.json()["results"][0]
    assert result["status"] == "replayed"
    assert result["jobId"] == entry.jobId
    assert admin.get(f"/v1/dead-letters/{entry.id}").status_code == 404
    assert admin.get(f"/v1/jobs/{entry.jobId}").json()["state"] == "queued"


def test_a_replay_request_needs_ids_or_a_filter(admin: Api) -> None:
    for body in ({}, {"ids": ["a"], "filter": {}}, {"ids": ["a", "b"], "payload": {}}):
        answer = admin.post("/v1/dead-letters/replay", json=body)
        assert answer.status_code == 422, body
        assert answer.json()["errors"][0]["field"] == "body"


def test_replay_by_filter_with_a_merge_patch_is_delivered_once(
    stack: Stack, fake: FakeHubSpot, admin: Api
) -> None:
    # Given two events dead-lettered as invalid by a real worker, and one rejected entry
    stack.start_worker()
    send_raw(stack.settings, [{"jobId": "raw-1", "event": without("eventOrganizer", 1)}])
    send_raw(stack.settings, [{"jobId": "raw-2", "event": without("eventOrganizer", 2)}])
    wait_state(stack, "raw-1", "dead_lettered")
    wait_state(stack, "raw-2", "dead_lettered")
    seed_dead_letter(stack.settings, valid_event(3), reason="rejected", http_status=400)
    # When the invalid ones are replayed by filter with the missing field patched in
    answer = admin.post(
        "/v1/dead-letters/replay",
        json={"filter": {"reason": "invalid"}, "patch": {"eventOrganizer": "Fixed Org"}},
    ).json()
    # Then both are delivered once, with the patch, and only the rejected entry is left
    assert answer["counts"] == {"replayed": 2}
    events = fake.wait_for_events(2, timeout_s=20)
    assert {e["body"]["eventOrganizer"] for e in events} == {"Fixed Org"}
    wait_state(stack, "raw-1", "delivered")
    wait_state(stack, "raw-2", "delivered")
    assert [e["reason"] for e in admin.get("/v1/dead-letters").json()["entries"]] == ["rejected"]


def test_delete_removes_the_entry_and_a_second_delete_is_404(stack: Stack, admin: Api) -> None:
    entry = seed_dead_letter(stack.settings, {"eventName": "x"})
    assert admin.delete(f"/v1/dead-letters/{entry.id}").json() == {"id": entry.id, "deleted": True}
    assert admin.get(f"/v1/dead-letters/{entry.id}").status_code == 404
    assert admin.delete(f"/v1/dead-letters/{entry.id}").status_code == 404


def test_every_admin_action_is_audited_with_key_name_ids_time_and_outcome(
    stack: Stack, admin: Api
) -> None:
    # Given an admin who dry-runs, replays with a patch and deletes
    started = time.time()
    first = seed_dead_letter(stack.settings, without("eventOrganizer", 1))
    second = seed_dead_letter(stack.settings, {"eventName": "junk"})
    admin.post("/v1/dead-letters/replay", json={"ids": [first.id], "dryRun": True})
    admin.post(
        "/v1/dead-letters/replay", json={"ids": [first.id], "patch": {"eventOrganizer": "A"}}
    )
    admin.delete(f"/v1/dead-letters/{second.id}")
    # When the audit log is read back, a page at a time
    page = admin.get("/v1/audit?limit=2").json()
    rest = admin.get("/v1/audit", params={"cursor": page["nextCursor"]}).json()
    entries = page["entries"] + rest["entries"]
    # Then it holds each action, newest first, with the key's name and never the key
    assert [(e["action"], e["ids"], e["outcome"]) for e in entries] == [
        ("delete", [second.id], "deleted"),
        ("replay", [first.id], "replayed=1"),
        ("dry_run", [first.id], "invalid=1"),
    ]
    assert {e["keyName"] for e in entries} == {"oncall"}
    assert [e["patched"] for e in entries] == [False, True, False]
    assert all(started <= e["at"] <= time.time() for e in entries)
    assert rest["nextCursor"] is None
    assert ADMIN_KEY not in str(entries)


def test_replaying_an_event_another_live_job_has_answers_that_job_and_makes_none(
    service_settings: Settings,
) -> None:
    # Given an event queued as a live job, and a dead-letter entry of another job with it
    settings = service_settings
    producer = Producer(settings)
    live_id, _ = producer.enqueue(valid_event("twin"))
    entry = seed_dead_letter(settings, valid_event("twin"), reason="exhausted")
    # When that entry is replayed
    result = Replayer(producer).replay(entry)
    # Then it answers the live job, drops the entry, and reopens nothing
    assert (result.status, result.job_id) == ("already_live", live_id)
    assert Replayer(producer).store.get(entry.id) is None
    client = redis.Redis.from_url(settings.redis_url)
    keys = Keys(settings.key_prefix)
    assert client.hget(keys.job(entry.jobId), "state") == b"dead_lettered"
    assert client.llen(settings.bulk_queue) == 0
    # And replaying it once the live job is gone reopens it: queued, checked first, recorded
    client.hset(keys.job(live_id), "state", "dead_lettered")
    entry = seed_dead_letter(settings, valid_event("twin"), reason="exhausted")
    result = Replayer(producer).replay(entry)
    assert (result.status, result.job_id) == ("replayed", entry.jobId)
    job = client.hgetall(keys.job(entry.jobId))
    assert (job[b"state"], job[b"verify"], job[b"source"]) == (b"queued", b"1", b"replay")
    assert b"deadLetterId" not in job
    stored = client.get(keys.job_envelope(entry.jobId))
    assert stored is not None
    assert client.get(keys.dedupe_for(JobEnvelope.model_validate_json(stored))) == (
        entry.jobId.encode()
    )
    history = [
        json.loads(r)["outcome"] for r in client.lrange(keys.job_history(entry.jobId), 0, -1)
    ]
    assert history[-1] == "replayed"
    assert client.llen(settings.bulk_queue) == 1
