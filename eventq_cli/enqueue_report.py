"""What `eventq enqueue` says about each item and in its summary (pure: no I/O)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["ItemOutcome", "ago", "item_json", "item_line", "summary"]

Status = Literal["queued", "already_queued", "already_delivered", "rejected"]


@dataclass(frozen=True)
class ItemOutcome:
    """One item of the input and what became of it."""

    place: str  # `line 3` or `item 3`
    event_id: str | None  # its externalEventId, when it has one
    job_id: str | None = None
    problem: str | None = None  # why it was rejected
    duplicate: bool = False
    existing_state: str | None = None  # of the job that answered a duplicate
    delivered_at: float | None = None

    @property
    def status(self) -> Status:
        """Return what happened: a new job, an existing one (live or delivered), or rejected."""
        if self.problem is not None:
            return "rejected"
        if not self.duplicate:
            return "queued"
        return "already_delivered" if self.existing_state == "delivered" else "already_queued"


def ago(seconds: float) -> str:
    """Return an age in words: `12 s ago`, `3 min ago`, `2 h ago`."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s ago"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min ago"
    return f"{seconds // 3600:.0f} h ago"


def item_line(item: ItemOutcome, *, now: float) -> str:
    """Return the item's line: place, job id, externalEventId and what happened.

    `line 2: 6f1c… evt-7 already queued (job retrying)`; a rejected item's line names the field
    and the problem instead.
    """
    if item.status == "rejected":
        return f"{item.place}: {item.problem}"
    outcome = {
        "queued": "queued",
        "already_queued": f"already queued (job {item.existing_state})",
        "already_delivered": f"already delivered {ago(now - (item.delivered_at or now))} "
        "(within EVENTQ_DEDUPE_WINDOW_S): not sent again",
    }[item.status]
    return f"{item.place}: {item.job_id} {item.event_id or '-'} {outcome}"


def item_json(item: ItemOutcome, warnings: list[Any]) -> dict[str, Any]:
    """Return the item's `--json` object (one JSON Lines row)."""
    return {
        "item": item.place,
        "status": item.status,
        "jobId": item.job_id,
        "externalEventId": item.event_id,
        "duplicate": item.duplicate,
        "existingState": item.existing_state,
        "deliveredAt": item.delivered_at,
        "error": item.problem,
        "warnings": [{"field": w.field, "message": w.message} for w in warnings],
    }


def summary(items: list[ItemOutcome], warnings: int) -> str:
    """Return the closing line: how many were enqueued, already there, rejected, warned."""
    counts = Counter(item.status for item in items)
    accepted = len(items) - counts["rejected"]
    delivered = counts["already_delivered"]
    return (
        f"{accepted} enqueued ({counts['already_queued']} already queued"
        + (f", {delivered} delivered recently: not sent again" if delivered else "")
        + f"), {counts['rejected']} rejected of {len(items)} items"
        + (f", {warnings} warnings" if warnings else "")
    )
