"""Ingest and job status: `POST /v1/events`, `POST /v1/events/batch`, `GET /v1/jobs/{jobId}`."""

from __future__ import annotations

import re
from typing import Any, Literal, cast

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel

from eventq.jobs import job_state
from eventq.keys import ID_PATTERN
from eventq.records import JobState, JobStatus
from eventq.settings import Settings
from eventq.tracing import attached, carrier_from_headers
from producers.enqueue import EnqueueResult, Producer, RejectedEvent
from producers.http_auth import PRINCIPAL
from producers.http_bodies import json_response, read_json, validate_model, validate_query
from producers.http_errors import ApiError, problems_of
from producers.http_models import (
    BatchItemResult,
    BatchResponse,
    EnqueueResponse,
    ErrorBody,
    FieldProblem,
    IngestEvent,
    IngestQuery,
    batch_models,
)
from producers.http_routes import Route
from producers.http_state import state_of

__all__ = ["IDEMPOTENCY_HEADER", "ingest_routes"]

IDEMPOTENCY_HEADER = "Idempotency-Key"
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_JOB_ID = {"type": "string", "pattern": ID_PATTERN}
_IDEMPOTENCY_DOC = {
    "type": "string",
    "pattern": _IDEMPOTENCY_KEY.pattern,
    "description": "Same key again (from the same API key) returns the first request's job.",
}


def _idempotency_key(request: web.Request) -> str | None:
    """Return the Idempotency-Key header scoped to the caller's key name, or None."""
    value = request.headers.get(IDEMPOTENCY_HEADER)
    if value is None:
        return None
    if not _IDEMPOTENCY_KEY.match(value):
        problem = FieldProblem(
            field=IDEMPOTENCY_HEADER, message="expected 1-255 printable ASCII characters"
        )
        raise ApiError(422, "validation_failed", problem.message, errors=[problem])
    return f"{request[PRINCIPAL].name}\x00{value}"


def _callback_url(event: dict[str, Any]) -> str | None:
    """Take the job's `callbackUrl` out of the event body (HubSpot's body has no such field)."""
    url = event.pop("callbackUrl", None)
    if url is not None and not isinstance(url, str):
        problem = FieldProblem(field="callbackUrl", message="expected a URL string")
        raise ApiError(422, "validation_failed", problem.message, errors=[problem])
    return url


def _enqueue_one(
    producer: Producer,
    event: Any,
    query: IngestQuery,
    idempotency_key: str | None,
    callback_url: str | None,
    trace_context: dict[str, str] | None,
) -> EnqueueResponse:
    with attached(trace_context):  # the job continues the caller's trace
        result = producer.enqueue_one(
            event,
            source="http",
            portal_id=query.portalId,
            priority=query.priority,
            idempotency_key=idempotency_key,
            callback_url=callback_url,
        )
    job_id = cast(str, result.job_id)  # enqueue_one raises instead of rejecting
    state = "queued"
    if result.duplicate:
        state = job_state(producer.redis, producer.keys, job_id) or "queued"
    return EnqueueResponse(
        jobId=job_id,
        status=cast(JobState, state),
        duplicate=result.duplicate,
        warnings=problems_of(result.warnings),
    )


async def post_event(request: web.Request) -> web.Response:
    """Validate one event and enqueue it; 202 with the job (or the live job that has it)."""
    state = state_of(request)
    query = validate_query(IngestQuery, request)
    idempotency_key = _idempotency_key(request)
    event = await read_json(request, state.settings.max_body_bytes)
    if not isinstance(event, dict):
        problem = FieldProblem(field="event", message="expected a JSON object")
        raise ApiError(422, "validation_failed", problem.message, errors=[problem])
    callback_url = _callback_url(event)
    try:
        answer = await state.run(
            _enqueue_one,
            state.producer,
            event,
            query,
            idempotency_key,
            callback_url,
            carrier_from_headers(request.headers),
        )
    except RejectedEvent as rejected:
        problems = problems_of(rejected.errors)
        raise ApiError(422, "validation_failed", str(rejected), errors=problems) from None
    state.metrics.enqueued("single", duplicate=answer.duplicate)
    return json_response(answer, 202)


def _batch_item(result: EnqueueResult) -> BatchItemResult:
    if result.job_id is None:
        return BatchItemResult(
            index=result.index, status="rejected", errors=problems_of(result.errors)
        )
    return BatchItemResult(
        index=result.index,
        status="accepted",
        jobId=result.job_id,
        duplicate=result.duplicate,
        warnings=problems_of(result.warnings),
    )


def _enqueue_many(
    producer: Producer,
    items: list[Any],
    query: IngestQuery,
    idempotency_key: str | None,
    trace_context: dict[str, str] | None,
) -> list[EnqueueResult]:
    with attached(trace_context):  # each job continues the caller's trace
        return producer.enqueue_many(
            items,
            source="http",
            portal_id=query.portalId,
            priority=query.priority,
            idempotency_key=idempotency_key,
        )


def _batch_handler(container: type[BaseModel]) -> Handler:
    async def post_batch(request: web.Request) -> web.Response:
        """Validate and enqueue each item; 202 with one result per item, in order."""
        state = state_of(request)
        query = validate_query(IngestQuery, request)
        idempotency_key = _idempotency_key(request)
        body = await read_json(request, state.settings.max_body_bytes)
        items: list[Any] = validate_model(container, body).events  # type: ignore[attr-defined]
        results = await state.run(
            _enqueue_many,
            state.producer,
            items,
            query,
            idempotency_key,
            carrier_from_headers(request.headers),
        )
        answer = _batch_answer(results)
        state.metrics.rejected("validation_failed", answer.rejected)
        state.metrics.enqueued("batch", count=answer.accepted - answer.duplicates)
        state.metrics.enqueued("batch", duplicate=True, count=answer.duplicates)
        return json_response(answer, 202)

    return post_batch


def _batch_answer(results: list[EnqueueResult]) -> BatchResponse:
    items = [_batch_item(r) for r in results]
    accepted = sum(1 for i in items if i.status == "accepted")
    return BatchResponse(
        accepted=accepted,
        rejected=len(items) - accepted,
        duplicates=sum(1 for i in items if i.duplicate),
        results=items,
    )


async def get_job(request: web.Request) -> web.Response:
    """Return one job's state, attempts, last error, objectId and timestamps; 404 if unknown."""
    job_id = request.match_info["jobId"]
    found: JobStatus | None = await state_of(request).jobs.get(job_id)
    if found is None:
        raise ApiError(404, "not_found", "no such job (unknown or expired)")
    return json_response(found)


def ingest_routes(settings: Settings) -> list[Route]:
    """Return the ingest and job-status routes (the batch body is bounded by the settings)."""
    documented, container = batch_models(settings.max_batch_size)
    body_errors: dict[int, type[BaseModel]] = {
        400: ErrorBody,
        413: ErrorBody,
        415: ErrorBody,
        422: ErrorBody,
    }
    idempotency = {IDEMPOTENCY_HEADER: _IDEMPOTENCY_DOC}
    access: Literal["producer"] = "producer"
    return [
        Route(
            "POST",
            "/v1/events",
            post_event,
            access,
            "createEvent",
            "Validate one marketing event and enqueue it",
            "ingest",
            {202: EnqueueResponse, **body_errors},
            body=IngestEvent,
            query=IngestQuery,
            headers=idempotency,
        ),
        Route(
            "POST",
            "/v1/events/batch",
            _batch_handler(container),
            access,
            "createEventsBatch",
            f"Validate and enqueue up to {settings.max_batch_size} events, reported per item",
            "ingest",
            {202: BatchResponse, **body_errors},
            body=documented,
            query=IngestQuery,
            headers=idempotency,
        ),
        Route(
            "GET",
            "/v1/jobs/{jobId}",
            get_job,
            access,
            "getJob",
            "A job's state, attempts, last error, objectId and timestamps",
            "jobs",
            {200: JobStatus, 404: ErrorBody},
            path_params={"jobId": _JOB_ID},
        ),
    ]
