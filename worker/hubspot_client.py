"""The only module that speaks HTTP to HubSpot: aiohttp in, typed `AttemptResult` out."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp

from worker.attempts import AttemptResult, Created, Found, HttpFailure, NetworkFailure, NotFound

__all__ = ["EVENTS_PATH", "EventsApi", "HubSpotClient", "new_session"]

EVENTS_PATH = "/marketing/v3/marketing-events/events"


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
    return aiohttp.ClientSession(timeout=timeout, connector=connector, raise_for_status=False)


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

    def _event_url(self, external_event_id: str) -> str:
        return f"{self._base_url}{EVENTS_PATH}/{quote(external_event_id, safe='')}"

    async def _exchange(self, method: str, url: str, token: str, data: str | None) -> AttemptResult:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        try:
            async with self._session.request(method, url, data=data, headers=headers) as response:
                status, answer = response.status, dict(response.headers)
                text = await response.text()
        except aiohttp.ClientConnectorError as error:
            return _network("connect", False, error, started)
        except TimeoutError as error:
            return _network("timeout", True, error, started)
        except aiohttp.ServerDisconnectedError as error:
            return _network("disconnected", True, error, started)
        except aiohttp.ClientError as error:
            return _network("other", True, error, started)
        latency_ms = (time.perf_counter() - started) * 1000
        return _classify(method, status, _json(text), answer, latency_ms)


def _network(kind: str, sent: bool, error: BaseException, started: float) -> NetworkFailure:
    latency_ms = (time.perf_counter() - started) * 1000
    detail = type(error).__name__  # the class only: aiohttp messages may quote URLs or headers
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
