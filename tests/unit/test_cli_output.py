"""What the command line prints, as pure functions: enqueue's lines, id prefixes, DLQ tables."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from eventq.records import AttemptRecord, JobStatus
from eventq_cli.enqueue_report import ItemOutcome, ago, item_json, item_line, summary
from eventq_cli.ids import AmbiguousId, UnknownId, resolve_id
from eventq_cli.tables import dead_letters_table, job_table
from tests.conftest import dead_letter_entry, valid_event

JOB = "6f1c0a9e2b7d4c3f8e5a1b2c3d4e5f60"
NOW = 1_800_000_000.0


def test_an_accepted_item_line_names_its_place_job_id_event_and_that_it_is_new() -> None:
    item = ItemOutcome("line 1", "evt-1", JOB)
    assert item_line(item, now=NOW) == f"line 1: {JOB} evt-1 queued"


def test_a_duplicate_of_a_live_job_says_already_queued_and_the_jobs_state() -> None:
    item = ItemOutcome("line 2", "evt-2", JOB, duplicate=True, existing_state="retrying")
    assert item_line(item, now=NOW) == f"line 2: {JOB} evt-2 already queued (job retrying)"


def test_a_duplicate_of_a_recent_delivery_says_when_and_that_it_is_not_sent_again() -> None:
    item = ItemOutcome(
        "item 3",
        "evt-3",
        JOB,
        duplicate=True,
        existing_state="delivered",
        delivered_at=NOW - 190,
    )
    assert item_line(item, now=NOW) == (
        f"item 3: {JOB} evt-3 already delivered 3 min ago (within EVENTQ_DEDUPE_WINDOW_S): "
        "not sent again"
    )


def test_a_rejected_item_line_names_the_field_and_problem() -> None:
    item = ItemOutcome("line 4", "evt-4", problem="startDateTime: has no time zone")
    assert item_line(item, now=NOW) == "line 4: startDateTime: has no time zone"


@pytest.mark.parametrize(
    ("seconds", "words"), [(0, "0 s ago"), (59, "59 s ago"), (61, "1 min ago"), (7300, "2 h ago")]
)
def test_ages_read_in_seconds_minutes_or_hours(seconds: float, words: str) -> None:
    assert ago(seconds) == words


def test_the_summary_counts_new_live_duplicates_recent_deliveries_and_rejections() -> None:
    items = [
        ItemOutcome("line 1", "evt-1", JOB),
        ItemOutcome("line 2", "evt-2", JOB, duplicate=True, existing_state="queued"),
        ItemOutcome("line 3", "evt-3", JOB, duplicate=True, existing_state="delivered"),
        ItemOutcome("line 4", None, problem="not valid JSON"),
    ]
    assert summary(items, warnings=0) == (
        "3 enqueued (1 already queued, 1 delivered recently: not sent again), 1 rejected of 4 items"
    )
    assert summary(items[:1], warnings=2) == (
        "1 enqueued (0 already queued), 0 rejected of 1 items, 2 warnings"
    )


def test_an_items_json_says_its_status_job_and_event() -> None:
    item = ItemOutcome("line 2", "evt-2", JOB, duplicate=True, existing_state="queued")
    assert item_json(item, []) == {
        "item": "line 2",
        "status": "already_queued",
        "jobId": JOB,
        "externalEventId": "evt-2",
        "duplicate": True,
        "existingState": "queued",
        "deliveredAt": None,
        "error": None,
        "warnings": [],
    }


IDS = ["abcdef0011", "abcdef0022", "123456789a"]


def resolve(given: str) -> str:
    return resolve_id(
        given,
        noun="job",
        exists=lambda i: i in IDS,
        starting=lambda prefix, limit: [i for i in IDS if i.startswith(prefix)][:limit],
    )


def test_a_whole_id_or_a_unique_prefix_of_six_characters_names_its_record() -> None:
    assert resolve("abcdef0022") == "abcdef0022"
    assert resolve("123456") == "123456789a"
    assert resolve("abcdef001") == "abcdef0011"


def test_an_ambiguous_prefix_lists_the_candidates() -> None:
    with pytest.raises(AmbiguousId) as raised:
        resolve("abcdef")
    assert raised.value.field == "id"
    assert str(raised.value) == (
        "'abcdef' is the start of several job ids; give more characters:\n"
        "  abcdef0011\n  abcdef0022"
    )


def test_an_unknown_id_says_so_and_a_short_prefix_says_how_long_it_must_be() -> None:
    with pytest.raises(UnknownId, match="no job 'ffffffff', and no job id starts with it"):
        resolve("ffffffff")
    with pytest.raises(UnknownId, match="at least 6 of its first characters"):
        resolve("12345")


def printed(width: int, entries: list) -> str:  # type: ignore[type-arg]
    """Print the DLQ table as `eventq dlq list` does, on a console (or pipe) `width` wide."""
    console = Console(width=width, file=io.StringIO(), color_system=None)
    console.print(dead_letters_table(entries, console.width), crop=False)
    return console.file.getvalue()  # type: ignore[attr-defined]


@pytest.mark.parametrize("width", [200, 80, 60, 40])
def test_the_dead_letter_list_shows_every_id_whole_and_fits_the_width(width: int) -> None:
    message = "Property values were not valid: startDateTime is after endDateTime " * 2
    entries = [dead_letter_entry(valid_event(n), message=message) for n in range(3)]

    text = printed(width, entries)

    assert all(entry.id in text for entry in entries), text
    assert max(len(line) for line in text.splitlines()) <= width, text


def test_a_pipe_of_80_columns_keeps_the_reason_event_and_error_beside_the_id() -> None:
    entries = [dead_letter_entry(valid_event(1), message="Property values were not valid")]

    header = printed(80, entries).splitlines()[1].split()

    assert header[:4] == ["id", "reason", "event", "error"]


def test_an_id_wider_than_the_terminal_folds_onto_the_next_line_whole() -> None:
    entry = dead_letter_entry(valid_event(1))

    text = printed(20, [entry])

    assert entry.id in "".join(line.strip() for line in text.splitlines())
    assert "…" not in text


def test_the_status_table_shows_the_job_and_dead_letter_ids_whole_in_a_pipe() -> None:
    job = JobStatus(
        jobId=JOB,
        state="dead_lettered",
        attempts=1,
        source="cli",
        summary="acct-1/evt-1 'Webinar 1'",
        lastError="rejected: Property values were not valid",
        deadLetterId="0123456789abcdef0123456789abcdef",
        createdAt=NOW,
        updatedAt=NOW,
        history=[
            AttemptRecord(
                attempt=1,
                at=NOW,
                outcome="dead_letter",
                httpStatus=400,
                detail="connect: ClientConnectorDNSError to api.hubapi.com:443",
            )
        ],
    )
    console = Console(width=80, file=io.StringIO(), color_system=None)

    console.print(job_table(job), crop=False)

    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert JOB in text
    assert "0123456789abcdef0123456789abcdef" in text
    assert "…" not in text
