"""`POST /v1/dead-letters/delete`: delete many entries at once (by ids or filter), dry run first.

Replay of many entries is `POST /v1/dead-letters/replay` (ids or filter, `dryRun`, `patch`);
this is its counterpart for deletion, with the same selection and one audit entry per call
listing every id acted on.
"""

from __future__ import annotations

from collections import Counter
from itertools import islice
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, model_validator

from eventq.dead_letters import DeadLetterStore
from producers.http_auth import PRINCIPAL
from producers.http_bodies import json_response, read_json, validate_model
from producers.http_dead_letters import selector_filter
from producers.http_models import MAX_REPLAY, DeadLetterSelector, ErrorBody, Id
from producers.http_routes import Route
from producers.http_state import state_of

__all__ = ["BulkDeleteRequest", "BulkDeleteResponse", "bulk_routes"]

DeleteStatus = Literal["deleted", "would_delete", "missing"]


class BulkDeleteRequest(BaseModel):
    """Delete entries by `ids` or by `filter`; `dryRun` only says which exist."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ids: list[Id] | None = Field(None, min_length=1, max_length=MAX_REPLAY)
    filter: DeadLetterSelector | None = None
    dryRun: bool = False
    limit: int = Field(MAX_REPLAY, ge=1, le=MAX_REPLAY, description="Most entries per call.")

    @model_validator(mode="after")
    def _one_selection(self) -> BulkDeleteRequest:
        if (self.ids is None) == (self.filter is None):
            raise ValueError("give `ids` or `filter`, not both")
        return self


class BulkDeleteItem(BaseModel):
    """What happened to one entry."""

    id: str
    status: DeleteStatus


class BulkDeleteResponse(BaseModel):
    """Per-entry results and their counts by status."""

    dryRun: bool
    counts: dict[str, int]
    results: list[BulkDeleteItem]


def _selected_ids(store: DeadLetterStore, ask: BulkDeleteRequest) -> list[str]:
    if ask.ids is not None:
        return list(dict.fromkeys(ask.ids))[: ask.limit]
    assert ask.filter is not None  # the model requires ids or filter
    return [e.id for e in islice(store.iter_matching(selector_filter(ask.filter)), ask.limit)]


def _delete(store: DeadLetterStore, ask: BulkDeleteRequest) -> list[BulkDeleteItem]:
    items = []
    for entry_id in _selected_ids(store, ask):
        if ask.dryRun:
            found = store.get(entry_id) is not None
            items.append(BulkDeleteItem(id=entry_id, status="would_delete" if found else "missing"))
        else:
            done = store.delete(entry_id)
            items.append(BulkDeleteItem(id=entry_id, status="deleted" if done else "missing"))
    return items


async def delete_dead_letters(request: web.Request) -> web.Response:
    """Delete the selected entries (or, with `dryRun`, say which would go); one audit entry."""
    state = state_of(request)
    body = await read_json(request, state.settings.max_body_bytes)
    ask = validate_model(BulkDeleteRequest, body)
    items = await state.run(_delete, state.replayer.store, ask)
    counts = dict(Counter(item.status for item in items))
    outcome = " ".join(f"{status}={n}" for status, n in sorted(counts.items())) or "nothing"
    await state.audit.record(
        request[PRINCIPAL], "dry_run" if ask.dryRun else "delete", [i.id for i in items], outcome
    )
    return json_response(BulkDeleteResponse(dryRun=ask.dryRun, counts=counts, results=items))


def bulk_routes() -> list[Route]:
    """Return the bulk DLQ routes."""
    return [
        Route(
            "POST",
            "/v1/dead-letters/delete",
            delete_dead_letters,
            "admin",
            "deleteDeadLetters",
            "Delete entries by ids or filter (dry run first); one audit entry per call",
            "dead-letters",
            {
                200: BulkDeleteResponse,
                400: ErrorBody,
                413: ErrorBody,
                415: ErrorBody,
                422: ErrorBody,
            },
            body=BulkDeleteRequest,
        )
    ]
