"""The only module that speaks HTTP to HubSpot: aiohttp in, typed `AttemptResult` out."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
from yarl import URL

try:  # the `otel` extra: a span per HubSpot request (eventq.tracing)
    from opentelemetry.instrumentation.aiohttp_client import create_trace_config
except ImportError:
    create_trace_config = None  # type: ignore[assignment]

from worker.attempts import (
    AttemptResult,
    BatchAnswer,
    BatchAttemptResult,
    BatchError,
    Created,
    Found,
    HttpFailure,
    NetworkFailure,
    NotFound,
)

__all__ = ["BATCH_UPSERT_PATH", "EVENTS_PATH", "EventsApi", "HubSpotClient", "new_session"]

EVENTS_PATH = "/marketing/v3/marketing-events/events"
BATCH_UPSERT_PATH = EVENTS_PATH + "/upsert"
_BATCH_ANSWERED = frozenset({200, 207})


def new_session(
    *, connect_timeout_s: float, read_timeout_s: float, max_connections: int
) -> aiohttp.ClientSession:
    """Return the one pooled keep-alive session a worker process uses for all requests."""
    timeout = aiohttp.ClientTimeout(
        total=None,
        sock_connect=connect_timeout_s,
        connect=connect_timeout_s,
        sock_read=read_timeout_s,
    )
    connector = aiohttp.TCPConnector(limit=max_connections, keepalive_timeout=30)
    return aiohttp.ClientSession(
        timeout=timeout,
        connector=connector,
        raise_for_status=False,
        trace_configs=_trace_configs(),
    )


def _trace_configs() -> list[aiohttp.TraceConfig]:
    """Return the request tracing of the `otel` extra (a span per HubSpot request), if installed.

    Its spans carry the method, the URL (ids only: the token travels in a header, which is not
    recorded) and the status; they are children of the attempt's span (`eventq.tracing`).
    """
    return [] if create_trace_config is None else [create_trace_config()]


class EventsApi(Protocol):
    """What the delivery path asks of HubSpot (HubSpotClient; an in-memory one in tests)."""

    @property
    def base_url(self) -> str:
        """Return the HubSpot base URL (the circuit breaker's target)."""
        ...

    async def create(self, body: Mapping[str, Any], token: str) -> AttemptResult:
        """POST the create body."""
        ...

    async def upsert(self, body: Mapping[str, Any], token: str) -> AttemptResult:
        """PUT the body to the event's own URL."""
        ...

    async def find(
        self, external_account_id: str, external_event_id: str, token: str
    ) -> AttemptResult:
        """GET the event by its external ids."""
        ...


class HubSpotClient:
    """Create, upsert and look up marketing events; every failure becomes data, not an exception."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")

    @property
    def base_url(self) -> str:
        """Return the HubSpot base URL this client talks to."""
        return self._base_url

    async def create(self, body: Mapping[str, Any], token: str) -> AttemptResult:
        """POST the create body; returns Created, HttpFailure or NetworkFailure."""
        url = self._base_url + EVENTS_PATH
        return await self._exchange("POST", url, token, json.dumps(body))

    async def upsert(self, body: Mapping[str, Any], token: str) -> AttemptResult:
        """PUT the body to the event's own URL (create-or-update, write scope).

        Returns Created, HttpFailure or NetworkFailure. Sent again, it cannot make a second event.
        """
        return await self._exchange(
            "PUT", self._event_url(str(body["externalEventId"])), token, json.dumps(body)
        )

    async def find(
        self, external_account_id: str, external_event_id: str, token: str
    ) -> AttemptResult:
        """GET the event by its external ids; returns Found, NotFound, HttpFailure or a failure."""
        query = "?externalAccountId=" + quote(external_account_id, safe="")
        return await self._exchange("GET", self._event_url(external_event_id) + query, token, None)

    async def upsert_batch(
        self, inputs: Sequence[Mapping[str, Any]], token: str
    ) -> BatchAttemptResult:
        """POST the create bodies as one batch upsert (create-or-update each by its external ids).

        Returns BatchAnswer (200, or 207 when some inputs were refused), HttpFailure for any
        other answer (the whole batch failed: 429, a 400 such as a batch too large, 5xx) or
        NetworkFailure. Sent again, it cannot make a second event of any input.
        """
        data = json.dumps({"inputs": list(inputs)})
        answer = await self._send("POST", self._base_url + BATCH_UPSERT_PATH, token, data)
        if isinstance(answer, NetworkFailure):
            return answer
        if answer.status in _BATCH_ANSWERED:
            return _batch_answer(answer)
        return HttpFailure(answer.status, answer.body, answer.headers, answer.latency_ms)

    def _event_url(self, external_event_id: str) -> str:
        return f"{self._base_url}{EVENTS_PATH}/{quote(external_event_id, safe='')}"

    async def _exchange(self, method: str, url: str, token: str, data: str | None) -> AttemptResult:
        answer = await self._send(method, url, token, data)
        if isinstance(answer, NetworkFailure):
            return answer
        return _classify(method, answer.status, answer.body, answer.headers, answer.latency_ms)

    async def _send(
        self, method: str, url: str, token: str, data: str | None
    ) -> _Answer | NetworkFailure:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        try:
            async with self._session.request(method, url, data=data, headers=headers) as response:
                status, answer = response.status, dict(response.headers)
                text = await response.text()
        except aiohttp.ClientConnectorError as error:
            return _network("connect", False, error, url, started)
        except TimeoutError as error:
            return _network("timeout", True, error, url, started)
        except aiohttp.ServerDisconnectedError as error:
            return _network("disconnected", True, error, url, started)
        except aiohttp.ClientError as error:
            return _network("other", True, error, url, started)
        latency_ms = (time.perf_counter() - started) * 1000
        return _Answer(status, _json(text), answer, latency_ms)


@dataclass(frozen=True)
class _Answer:
    """An HTTP answer before it is given a meaning."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str]
    latency_ms: float


def _network(
    kind: str, sent: bool, error: BaseException, url: str, started: float
) -> NetworkFailure:
    """Return the failure as the class of aiohttp's error and the host and port it tried
    (`ClientConnectorDNSError to api.hubapi.com:443`): aiohttp's message may quote headers."""
    latency_ms = (time.perf_counter() - started) * 1000
    target = URL(url)
    detail = f"{type(error).__name__} to {target.host}:{target.port}"
    return NetworkFailure(kind=kind, sent=sent, detail=detail, latency_ms=latency_ms)  # type: ignore[arg-type]


def _json(text: str) -> dict[str, Any]:
    try:
        loaded = json.loads(text) if text else {}
    except ValueError:
        return {"message": text[:500]}
    return loaded if isinstance(loaded, dict) else {"message": str(loaded)[:500]}


def _classify(
    method: str, status: int, body: dict[str, Any], headers: dict[str, str], latency_ms: float
) -> AttemptResult:
    found_id = body.get("id") or body.get("objectId")
    object_id = None if found_id is None else str(found_id)
    if 200 <= status < 300 and method != "GET":
        return Created(object_id, headers, latency_ms)
    if status == 200 and object_id is not None:
        return Found(object_id, headers, latency_ms)
    if method == "GET" and status == 404:
        return NotFound(headers, latency_ms)
    return HttpFailure(status, body, headers, latency_ms)


def _batch_answer(answer: _Answer) -> BatchAnswer:
    """Return a 200/207 batch answer as data; parts that are missing or malformed are left out
    (an input whose result is missing is then unknown, never guessed)."""
    body = answer.body
    results = tuple(item for item in _list(body.get("results")) if isinstance(item, dict))
    errors = tuple(
        _batch_error(item) for item in _list(body.get("errors")) if isinstance(item, dict)
    )
    count = body.get("numErrors")
    num_errors = count if isinstance(count, int) and count >= len(errors) else len(errors)
    status = body.get("status")
    return BatchAnswer(
        status=answer.status,
        results=results,
        errors=errors,
        num_errors=num_errors,
        batch_status=None if status is None else str(status),
        headers=answer.headers,
        latency_ms=answer.latency_ms,
    )


def _batch_error(item: dict[str, Any]) -> BatchError:
    context = item.get("context")
    pairs = context.items() if isinstance(context, dict) else ()
    category = item.get("category")
    return BatchError(
        message=str(item.get("message") or "refused without a message"),
        category=None if category is None else str(category),
        context={str(name): _strings(value) for name, value in pairs},
        details=tuple(d for d in _list(item.get("errors")) if isinstance(d, dict)),
    )


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(item) for item in value) if isinstance(value, list) else (str(value),)
