"""Rich tables for the CLI: job status and dead-letter entries."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

from eventq.records import AttemptRecord, DeadLetter, JobStatus

__all__ = [
    "attempts_table",
    "attempts_text",
    "dead_letter_table",
    "dead_letters_table",
    "job_table",
    "when",
]


def when(epoch_s: float | None) -> str:
    """Return an epoch time as `YYYY-MM-DD HH:MM:SSZ`, or `-`."""
    if not epoch_s:
        return "-"
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def job_table(job: JobStatus) -> Table:
    """Return a two-column table of one job, followed by its attempts."""
    table = _record_table(f"job {job.jobId}")
    rows = [
        ("state", job.state),
        ("attempts", attempts_text(job)),
        ("event", job.summary),
        ("objectId", job.objectId or "-"),
        ("last status", "-" if job.lastStatus is None else str(job.lastStatus)),
        ("last error", job.lastError or "-"),
        ("dead-letter id", job.deadLetterId or "-"),
        ("next attempt", when(job.nextAttemptAt)),
        ("created", when(job.createdAt)),
        ("updated", when(job.updatedAt)),
    ]
    for key, value in rows:
        table.add_row(key, value)
    table.add_row("history", attempts_table(job.history))
    return table


def _record_table(title: str) -> Table:
    """Return a two-column (name, value) table whose values wrap whole, ids included."""
    table = Table(title=title, show_header=False)
    table.add_column("field", no_wrap=True)
    table.add_column("value", overflow="fold")
    return table


def attempts_text(job: JobStatus) -> str:
    """Return the attempts row: the retry budget used, and the last attempt's number if it differs.

    The number differs after a replay (a fresh budget, the numbering goes on) and after waits that
    used no attempt (a 429, a breaker refusal).
    """
    if job.lastAttempt is None or job.lastAttempt == job.attempts:
        return str(job.attempts)
    return f"{job.attempts} of the retry budget since queued; last attempt #{job.lastAttempt}"


def attempts_table(history: list[AttemptRecord]) -> Table:
    """Return one row per attempt record."""
    table = Table()
    for name in ("#", "at", "outcome", "HTTP", "ms", "detail"):
        table.add_column(name, overflow="fold")  # wrapped, never cut with an ellipsis
    for record in history:
        table.add_row(
            str(record.attempt),
            when(record.at),
            record.outcome,
            str(record.httpStatus or "-"),
            str(record.latencyMs or "-"),
            record.detail,
        )
    return table


def dead_letters_table(entries: list[DeadLetter], width: int) -> Table:
    """Return one row per entry: id, reason, event, error, HTTP status, time, to fit `width`.

    The id is never cut, also on a narrow terminal or in a pipe (80 columns): the columns that
    do not fit even when wrapped are left out, last first (`eventq dlq show ID` has them all).
    """
    columns = list(_DEAD_LETTER_COLUMNS)
    while True:
        table = _dead_letters(entries, columns)
        if len(columns) == 1 or _fits(table, width, [e.id for e in entries]):
            return table
        columns.pop()


def _fits(table: Table, width: int, ids: list[str]) -> bool:
    """Return True when `table` printed at `width` is no wider and shows every id whole (rich
    lets a table overflow when its columns cannot wrap narrower, or shortens a column)."""
    console = Console(width=width, file=io.StringIO(), color_system=None)
    console.print(table, crop=False)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    widest = max((cell_len(line) for line in text.splitlines()), default=0)
    return widest <= width and all(i in text for i in ids)


_MIN_WIDTHS = {"reason": 9, "event": 12, "error": 16, "HTTP": 4, "dead-lettered": 10}
_DEAD_LETTER_COLUMNS = ("id", "reason", "event", "error", "HTTP", "dead-lettered")


def _dead_letters(entries: list[DeadLetter], columns: list[str]) -> Table:
    # few border characters: more room for the columns
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for name in columns:
        if name == "id":  # alone and still too wide, it folds onto a second line, whole
            table.add_column(name, no_wrap=len(columns) > 1, overflow="fold")
        else:  # narrower than this, a column is left out rather than shown in shreds
            table.add_column(name, overflow="fold", min_width=_MIN_WIDTHS[name])
    for entry in entries:
        event = f"{entry.payload.get('externalAccountId')}/{entry.payload.get('externalEventId')}"
        cells = {
            "id": entry.id,
            "reason": entry.reason,
            "error": entry.error.message[:80],
            "event": event,
            "HTTP": str(entry.httpStatus or "-"),
            "dead-lettered": when(entry.deadLetteredAt),
        }
        table.add_row(*(cells[name] for name in columns))
    return table


def dead_letter_table(entry: DeadLetter) -> Table:
    """Return the whole of one entry."""
    import json

    table = _record_table(f"dead letter {entry.id}")
    table.add_row("job", entry.jobId)
    table.add_row("reason", entry.reason)
    table.add_row("HTTP status", str(entry.httpStatus or "-"))
    table.add_row("message", entry.error.message)
    table.add_row("category", entry.error.category or "-")
    table.add_row("correlationId", entry.error.correlationId or "-")
    table.add_row("first enqueued", when(entry.firstEnqueuedAt))
    table.add_row("dead-lettered", when(entry.deadLetteredAt))
    table.add_row("payload", json.dumps(entry.payload, indent=2))
    table.add_row("attempts", attempts_table(entry.attempts))
    return table
