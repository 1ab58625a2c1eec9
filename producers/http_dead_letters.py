"""The DLQ admin API: list with filters and cursors, show, replay (dry run, edit) and delete."""

from __future__ import annotations

from collections import Counter
from itertools import islice

from aiohttp import web

from eventq.dead_letters import DeadLetterFilter
from eventq.keys import ID_PATTERN, is_valid_id
from eventq.records import DeadLetter
from producers.http_auth import PRINCIPAL
from producers.http_bodies import json_response, read_json, validate_model, validate_query
from producers.http_errors import ApiError, problems_of
from producers.http_models import (
    DeadLetterPageBody,
    DeadLetterQuery,
    DeadLetterSelector,
    DeleteResponse,
    ErrorBody,
    ReplayItem,
    ReplayRequest,
    ReplayResponse,
)
from producers.http_routes import Route
from producers.http_state import state_of
from producers.replay import Replayer

__all__ = ["dead_letter_routes", "selector_filter"]

_ENTRY_ID = {"type": "string", "pattern": ID_PATTERN}


def selector_filter(selector: DeadLetterSelector) -> DeadLetterFilter:
    """Return the store's filter for an API selector."""
    return DeadLetterFilter(
        reason=selector.reason,
        http_status=selector.httpStatus,
        since=selector.since.timestamp() if selector.since else None,
        until=selector.until.timestamp() if selector.until else None,
        text=selector.text,
        message=selector.message,
    )


def _not_found(entry_id: str) -> ApiError:
    if not is_valid_id(entry_id):
        return ApiError(404, "not_found", "no such dead-letter entry (malformed id)")
    return ApiError(404, "not_found", f"no dead-letter entry {entry_id!r}")


async def list_dead_letters(request: web.Request) -> web.Response:
    """Return one page of entries, newest first, matching every given filter."""
    state = state_of(request)
    query = validate_query(DeadLetterQuery, request)
    page = await state.run(
        state.replayer.store.page, selector_filter(query), limit=query.limit, cursor=query.cursor
    )
    return json_response(DeadLetterPageBody(entries=page.entries, nextCursor=page.next_cursor))


async def get_dead_letter(request: web.Request) -> web.Response:
    """Return one entry: payload, error, every attempt."""
    state = state_of(request)
    entry_id = request.match_info["id"]
    entry = await state.run(state.replayer.store.get, entry_id)
    if entry is None:
        raise _not_found(entry_id)
    return json_response(entry)


def _selected(replayer: Replayer, ask: ReplayRequest) -> list[tuple[str, DeadLetter | None]]:
    store = replayer.store
    if ask.ids is not None:
        return [(entry_id, store.get(entry_id)) for entry_id in ask.ids[: ask.limit]]
    assert ask.filter is not None  # the model requires ids or filter
    matching = islice(store.iter_matching(selector_filter(ask.filter)), ask.limit)
    return [(entry.id, entry) for entry in matching]


def _replay(replayer: Replayer, ask: ReplayRequest) -> list[ReplayItem]:
    """Replay the selected entries (published in packs, as `eventq dlq replay` does)."""
    results = replayer.replay_entries(
        _selected(replayer, ask), dry_run=ask.dryRun, patch=ask.patch, payload=ask.payload
    )
    return [
        ReplayItem(id=result.entry_id, status="missing", detail="no such entry")
        if result.status == "missing"
        else ReplayItem(
            id=result.entry_id,
            status=result.status,
            jobId=result.job_id,
            detail=result.detail,
            errors=problems_of(result.errors),
        )
        for result in results
    ]


async def replay_dead_letters(request: web.Request) -> web.Response:
    """Re-validate and re-enqueue entries (by ids or filter); `dryRun` changes nothing."""
    state = state_of(request)
    body = await read_json(request, state.settings.max_body_bytes)
    ask = validate_model(ReplayRequest, body)
    items = await state.run(_replay, state.replayer, ask)
    counts = dict(Counter(item.status for item in items))
    outcome = " ".join(f"{status}={n}" for status, n in sorted(counts.items())) or "nothing"
    await state.audit.record(
        request[PRINCIPAL],
        "dry_run" if ask.dryRun else "replay",
        [item.id for item in items],
        outcome,
        patched=ask.patch is not None or ask.payload is not None,
    )
    return json_response(ReplayResponse(dryRun=ask.dryRun, counts=counts, results=items))


async def delete_dead_letter(request: web.Request) -> web.Response:
    """Delete one entry for good; 404 when there is no such entry."""
    state = state_of(request)
    entry_id = request.match_info["id"]
    if not is_valid_id(entry_id):
        raise _not_found(entry_id)  # addresses no entry: nothing to do, nothing to audit
    deleted = await state.run(state.replayer.store.delete, entry_id)
    await state.audit.record(
        request[PRINCIPAL], "delete", [entry_id], "deleted" if deleted else "missing"
    )
    if not deleted:
        raise _not_found(entry_id)
    return json_response(DeleteResponse(id=entry_id))


def dead_letter_routes() -> list[Route]:
    """Return the DLQ admin routes."""
    body_errors = {400: ErrorBody, 413: ErrorBody, 415: ErrorBody, 422: ErrorBody}
    return [
        Route(
            "GET",
            "/v1/dead-letters",
            list_dead_letters,
            "admin",
            "listDeadLetters",
            "Dead-letter entries, newest first, by reason, HTTP status, time range or text",
            "dead-letters",
            {200: DeadLetterPageBody, 422: ErrorBody},
            query=DeadLetterQuery,
        ),
        Route(
            "GET",
            "/v1/dead-letters/{id}",
            get_dead_letter,
            "admin",
            "getDeadLetter",
            "One entry: payload, error and attempt timeline",
            "dead-letters",
            {200: DeadLetter, 404: ErrorBody},
            path_params={"id": _ENTRY_ID},
        ),
        Route(
            "POST",
            "/v1/dead-letters/replay",
            replay_dead_letters,
            "admin",
            "replayDeadLetters",
            "Replay entries by ids or filter, optionally edited (merge patch or new payload)",
            "dead-letters",
            {200: ReplayResponse, **body_errors},
            body=ReplayRequest,
        ),
        Route(
            "DELETE",
            "/v1/dead-letters/{id}",
            delete_dead_letter,
            "admin",
            "deleteDeadLetter",
            "Delete one entry",
            "dead-letters",
            {200: DeleteResponse, 404: ErrorBody},
            path_params={"id": _ENTRY_ID},
        ),
    ]
