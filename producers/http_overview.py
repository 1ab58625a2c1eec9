"""`GET /v1/overview`: the admin page's first screen as JSON, from the reader `/metrics` uses.

Queue depths, outcomes per minute over the last hour, each limiter bucket's use and pause, the
breaker's state and the DLQ's counts by reason with its largest groups (reason + HubSpot's
message). Everything is counted on write (see `producers.cluster_state`), so the answer costs a
few Redis round trips however many dead letters are stored.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, Field

from producers.cluster_state import ClusterState
from producers.http_bodies import json_response
from producers.http_models import ErrorBody
from producers.http_routes import Route
from producers.http_state import state_of

__all__ = ["Overview", "overview_of", "overview_routes"]


class QueueDepths(BaseModel):
    """Jobs waiting: in the live and bulk queues (None when the broker is not Redis) and in the
    retry schedule."""

    live: int | None
    bulk: int | None
    retrySchedule: int


class Minute(BaseModel):
    """Attempt outcomes in one minute (`at`: its start, epoch seconds)."""

    at: int
    delivered: int
    retried: int
    deadLettered: int


class Bucket(BaseModel):
    """One rate-limiter bucket (an account's budget): its use now and any pause."""

    label: str = Field(description="`private app` or `portal <id>`; never a token.")
    budget: int = Field(description="Requests granted per window.")
    windowS: float
    used: int = Field(description="Requests sent in the current window.")
    reserved: int = Field(description="Requests granted slots still ahead.")
    pausedUntil: float | None = Field(None, description="Epoch seconds; None when not paused.")
    pauseReason: str | None = None


class Breaker(BaseModel):
    """The circuit breaker of one HubSpot base URL."""

    target: str
    state: str = Field(description="closed, open or half_open.")
    failures: int
    openUntil: float | None = None


class DeadLetterGroupCount(BaseModel):
    """Entries sharing a reason and HubSpot's message."""

    reason: str
    message: str
    count: int


class DeadLetterCountsBody(BaseModel):
    """The DLQ's size, by reason, and its largest groups."""

    total: int
    byReason: dict[str, int]
    groups: list[DeadLetterGroupCount]


class Overview(BaseModel):
    """What the cluster is doing now (`at`, epoch seconds)."""

    at: float
    queues: QueueDepths
    delivered: int = Field(description="Jobs delivered since Redis was created (all workers).")
    minutes: list[Minute] = Field(description="The last hour, one item a minute, oldest first.")
    buckets: list[Bucket]
    breakers: list[Breaker]
    deadLetters: DeadLetterCountsBody


def overview_of(cluster: ClusterState) -> Overview:
    """Return the JSON body of a ClusterState."""
    queues = cluster.queues or {}
    names = list(queues)
    dead = cluster.dead_letters
    return Overview(
        at=cluster.at,
        queues=QueueDepths(
            live=queues.get(names[0]) if names else None,
            bulk=queues.get(names[1]) if len(names) > 1 else None,
            retrySchedule=cluster.schedule,
        ),
        delivered=cluster.counters.get("delivered", 0),
        minutes=[
            Minute(
                at=m.minute, delivered=m.delivered, retried=m.retried, deadLettered=m.dead_lettered
            )
            for m in cluster.minutes
        ],
        buckets=[
            Bucket(
                label=b.label,
                budget=b.budget,
                windowS=b.window_s,
                used=b.used,
                reserved=b.reserved,
                pausedUntil=b.paused_until,
                pauseReason=b.reason,
            )
            for b in cluster.buckets
        ],
        breakers=[
            Breaker(target=b.target, state=b.state, failures=b.failures, openUntil=b.open_until)
            for b in cluster.breakers
        ],
        deadLetters=DeadLetterCountsBody(
            total=dead.total,
            byReason=dead.by_reason,
            groups=[
                DeadLetterGroupCount(reason=g.reason, message=g.message, count=g.count)
                for g in dead.groups
            ],
        ),
    )


async def get_overview(request: web.Request) -> web.Response:
    """Return the overview; 503 when Redis is unreachable."""
    return json_response(overview_of(await state_of(request).cluster.read()))


def overview_routes() -> list[Route]:
    """Return the overview route."""
    return [
        Route(
            "GET",
            "/v1/overview",
            get_overview,
            "admin",
            "getOverview",
            "Queue depths, outcomes per minute, limiter, breaker and DLQ counts at a glance",
            "operations",
            {200: Overview, 503: ErrorBody},
        )
    ]
