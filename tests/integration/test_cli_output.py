"""The command line's output can be acted on: enqueue prints ids that `status` takes, the DLQ
list shows whole ids in a pipe, a unique prefix names a job or an entry, dedupe says which.

`eventq` runs as a subprocess on the shared test Redis (`stack`); its output is a pipe, as in
`eventq dlq list | cat`, so rich prints 80 columns unless COLUMNS says otherwise.
"""

from __future__ import annotations

import json
import re

import redis

from eventq.dead_letters import queue_add_entry
from eventq.keys import Keys
from fake_hubspot.control import FakeHubSpot
from producers.enqueue import Producer
from tests.conftest import Stack, dead_letter_entry, valid_event
from tests.integration.helpers import wait_state, writes

WINDOW = "EVENTQ_DEDUPE_WINDOW_S"
JOB_LINE = re.compile(r"^line (\d+): ([0-9a-f]{32}) (\S+) (.+)$")


def add_dead_letters(stack: Stack, ids: list[str]) -> None:
    client = redis.Redis.from_url(stack.settings.redis_url)
    with client.pipeline() as pipe:
        for n, entry_id in enumerate(ids):
            entry = dead_letter_entry(
                valid_event(f"dl-{n}"),
                entry_id=entry_id,
                message="Property values were not valid: eventOrganizer is required " * 2,
                http_status=400,
                reason="rejected",
            )
            queue_add_entry(pipe, Keys(stack.settings.key_prefix), entry)
        pipe.execute()


def test_enqueue_prints_each_items_job_id_which_status_takes_whole_or_by_prefix(
    stack: Stack,
) -> None:
    # Given two events and a line without a time zone
    lines = [
        json.dumps(valid_event("ids-1")),
        json.dumps(valid_event("ids-2")),
        json.dumps(valid_event("ids-3", startDateTime="2026-03-01T18:00:00")),
    ]
    # When they are enqueued
    result = stack.run_cli("enqueue", "-", stdin="\n".join(lines))
    # Then stdout has one line per accepted item: line, job id, externalEventId, queued
    assert result.returncode == 1, result.stderr
    found = [JOB_LINE.match(line) for line in result.stdout.splitlines()]
    assert all(found), result.stdout
    rows = [m.groups() for m in found if m]
    assert [(n, event, what) for n, _, event, what in rows] == [
        ("1", "evt-ids-1", "queued"),
        ("2", "evt-ids-2", "queued"),
    ]
    # and the rejected line names the field and says how to fix it
    assert (
        "rejected line 3: startDateTime: has no time zone; add Z or +01:00, e.g. "
        "2026-03-01T18:00:00Z" in result.stderr
    )
    assert "2 enqueued (0 already queued), 1 rejected of 3 items" in result.stderr
    # When `status` is given the first id printed, whole and by its first 8 characters
    job_id = rows[0][1]
    whole = stack.run_cli("status", "--json", job_id)
    by_prefix = stack.run_cli("status", "--json", job_id[:8])
    # Then both show that job
    assert whole.returncode == 0, whole.stderr
    assert by_prefix.returncode == 0, by_prefix.stderr
    assert json.loads(by_prefix.stdout)["jobId"] == job_id
    assert json.loads(whole.stdout) == json.loads(by_prefix.stdout)


def test_enqueue_again_says_already_queued_quiet_prints_only_the_summary_json_one_line_each(
    stack: Stack,
) -> None:
    stdin = json.dumps(valid_event("again"))
    first = stack.run_cli("enqueue", "--json", "-", stdin=stdin)
    again = stack.run_cli("enqueue", "-", stdin=stdin)
    quiet = stack.run_cli("enqueue", "--quiet", "-", stdin=stdin)

    [row] = [json.loads(line) for line in first.stdout.splitlines()]  # JSON Lines
    assert (row["status"], row["externalEventId"]) == ("queued", "evt-again")
    assert again.stdout == f"item 1: {row['jobId']} evt-again already queued (job queued)\n"
    assert "1 enqueued (1 already queued), 0 rejected of 1 items" in again.stderr
    assert quiet.stdout == ""
    assert quiet.stderr.strip() == "1 enqueued (1 already queued), 0 rejected of 1 items"


def test_dlq_list_in_a_pipe_shows_whole_ids_and_a_unique_prefix_shows_one_entry(
    stack: Stack,
) -> None:
    # Given three entries, two of whose ids start alike
    ids = ["c0ffee01" + "a" * 24, "c0ffee01" + "b" * 24, "0ddba11" + "c" * 25]
    add_dead_letters(stack, ids)
    # When the list is printed to a pipe (80 columns, as `eventq dlq list | cat`)
    listed = stack.run_cli("dlq", "list")
    # Then every id is whole (narrower widths: tests/unit/test_cli_output.py)
    assert listed.returncode == 0, listed.stderr
    assert all(i in listed.stdout for i in ids), listed.stdout
    assert "…" not in listed.stdout
    # When an entry is shown by a unique prefix, an ambiguous one and an unknown one
    shown = stack.run_cli("dlq", "show", "--json", "0ddba11c")
    ambiguous = stack.run_cli("dlq", "show", "c0ffee01")
    unknown = stack.run_cli("dlq", "show", "abcdef12")
    # Then the unique one is shown, the ambiguous one lists the candidates, the others say why
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["id"] == ids[2]
    assert ambiguous.returncode == 1
    assert "'c0ffee01' is the start of several dead-letter entry ids" in ambiguous.stderr
    assert ids[0] in ambiguous.stderr
    assert ids[1] in ambiguous.stderr
    assert unknown.returncode == 1
    assert "no dead-letter entry 'abcdef12', and no dead-letter entry id starts with it" in (
        unknown.stderr
    )
    assert "Traceback" not in ambiguous.stderr + unknown.stderr


def test_dlq_replay_takes_a_unique_prefix_and_refuses_an_ambiguous_one(stack: Stack) -> None:
    ids = ["feed0001" + "a" * 24, "feed0001" + "b" * 24, "5eed0002" + "c" * 24]
    add_dead_letters(stack, ids)

    ambiguous = stack.run_cli("dlq", "replay", "5eed0002", "feed0001")
    replayed = stack.run_cli("dlq", "replay", "--json", "5eed0002")

    assert ambiguous.returncode == 1
    assert "several dead-letter entry ids" in ambiguous.stderr
    assert replayed.returncode == 0, replayed.stderr
    result = json.loads(replayed.stdout)  # one entry: one JSON document
    assert (result["entry_id"], result["status"]) == (ids[2], "replayed")


def test_an_event_delivered_within_the_dedupe_window_is_not_sent_again_and_after_it_is(
    stack: Stack, fake: FakeHubSpot
) -> None:
    # Given a worker and an event it delivered
    stack.start_worker(concurrency=4)
    job_id, _ = Producer(stack.settings).enqueue(valid_event("window"))
    wait_state(stack, job_id, "delivered", 20)
    stdin = json.dumps(valid_event("window"))
    # When the same event is enqueued again within the window (the default, 600 s)
    again = stack.run_cli("enqueue", "-", stdin=stdin)
    # Then it is the delivered job, said so, and nothing more is sent
    assert re.fullmatch(
        rf"item 1: {job_id} evt-window already delivered \d+ s ago "
        r"\(within EVENTQ_DEDUPE_WINDOW_S\): not sent again\n",
        again.stdout,
    ), again.stdout
    assert "1 delivered recently: not sent again" in again.stderr
    # When it is enqueued by a producer whose window has passed (a window of 0 s: refused
    # only while live), so no test waits for a window to run out
    later = stack.run_cli("enqueue", "--json", "-", stdin=stdin, env={WINDOW: "0"})
    # Then it is a new job, delivered again with create-or-update (one event in HubSpot)
    row = json.loads(later.stdout)
    assert (row["status"], row["duplicate"]) == ("queued", False)
    assert row["jobId"] != job_id
    wait_state(stack, row["jobId"], "delivered", 20)
    assert [r["method"] for r in writes(fake.requests())] == ["POST", "PUT"]
    assert len(fake.events()) == 1
