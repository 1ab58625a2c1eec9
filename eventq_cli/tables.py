"""Rich tables for the CLI: job status and dead-letter entries."""

from __future__ import annotations

from datetime import UTC, datetime

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
    table = Table(title=f"job {job.jobId}", show_header=False)
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
    table = Table("#", "at", "outcome", "HTTP", "ms", "detail")
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


def dead_letters_table(entries: list[DeadLetter]) -> Table:
    """Return one row per entry: id, reason, status, event, message, time."""
    table = Table("id", "reason", "HTTP", "event", "error", "dead-lettered")
    for entry in entries:
        event = f"{entry.payload.get('externalAccountId')}/{entry.payload.get('externalEventId')}"
        table.add_row(
            entry.id,
            entry.reason,
            str(entry.httpStatus or "-"),
            event,
            entry.error.message[:80],
            when(entry.deadLetteredAt),
        )
    return table


def dead_letter_table(entry: DeadLetter) -> Table:
    """Return the whole of one entry."""
    import json

    table = Table(title=f"dead letter {entry.id}", show_header=False)
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
