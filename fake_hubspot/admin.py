"""The `/_fake/` control routes (no auth, JSON in and out) that steer faults and read state."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fake_hubspot.auth import Identity, TokenFault
from fake_hubspot.config import DEFAULT_SCOPES, RateLimit, RefreshGrant
from fake_hubspot.faults import Injection
from fake_hubspot.ratelimit import OtherClient
from fake_hubspot.state import STATE, FakeState

__all__ = ["add_control_routes", "routes_help"]

Positive = Annotated[int, Field(gt=0)]
NonNegative = Annotated[int, Field(ge=0)]
Millis = Annotated[float, Field(ge=0)]
Status = Annotated[int, Field(ge=100, le=599)]
Text = Annotated[str, Field(min_length=1)]
_Model = TypeVar("_Model", bound=BaseModel)
_Handler = Callable[[web.Request], Awaitable[web.Response]]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LatencyIn(_In):
    """`POST /_fake/latency`: fixed `ms`, or uniform between `min_ms` and `max_ms`."""

    ms: Millis | None = None
    min_ms: Millis | None = None
    max_ms: Millis | None = None


class FailNextIn(_In):
    """`POST /_fake/fail-next`: answer the next `count` writes (and GETs) with `status`."""

    count: Positive = 1
    status: Status
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = None
    include_get: bool = False


class FailureRateIn(_In):
    """`POST /_fake/failure-rate`: answer a fraction `rate` of writes with `status`."""

    rate: Annotated[float, Field(ge=0.0, le=1.0)]
    status: Status = 503


class CountIn(_In):
    """`POST /_fake/hang` and `/_fake/close-after-create`: the next `count` writes."""

    count: NonNegative


class CloseRateIn(_In):
    """`POST /_fake/close-rate`: drop the connection after storing a fraction `rate` of writes."""

    rate: Annotated[float, Field(ge=0.0, le=1.0)]


class RateLimitIn(_In):
    """`POST /_fake/rate-limit`: `requests` per `window_ms` (null = off), daily budget, its zone."""

    requests: Positive | None
    window_ms: Positive = 10_000
    daily: Positive | None = None
    daily_timezone: Text = "UTC"


class OtherClientIn(_In):
    """`POST /_fake/other-client`: spend `requests` per `window_ms` of a token's budget."""

    token: Text
    requests: NonNegative
    window_ms: Positive = 10_000


class PortalRateLimitIn(_In):
    """`POST /_fake/account-rate-limit`: a portal's own limit (`requests` null = global)."""

    portal_id: int
    requests: Positive | None
    window_ms: Positive = 10_000


class TokenIn(_In):
    """`POST /_fake/tokens`: accept a private-app token (optional app name and scopes).

    `scopes` omitted: the fake's configured private-app scopes (`--token-scopes`).
    """

    token: Text
    app: Text | None = None
    scopes: list[str] | None = None


class RefreshTokenIn(_In):
    """A refresh token with its portal and scopes."""

    refresh_token: Text
    portal_id: int
    scopes: list[str] = Field(default_factory=lambda: list(DEFAULT_SCOPES))


class OAuthIn(_In):
    """`POST /_fake/oauth`: client credentials, token lifetime, more refresh tokens."""

    client_id: Text | None = None
    client_secret: Text | None = None
    access_token_lifetime_s: Annotated[float, Field(gt=0)] | None = None
    refresh_tokens: list[RefreshTokenIn] = Field(default_factory=list)


class RevokeIn(_In):
    """`POST /_fake/oauth/revoke`: revoke a refresh token (and optionally its access tokens)."""

    refresh_token: Text
    access_tokens: bool = False


class RotateIn(_In):
    """`POST /_fake/oauth/rotate`: the next `count` refreshes of a portal answer a new refresh
    token; `revoke_old` revokes the one used (only the newest works), else both keep working."""

    portal_id: int
    count: Positive = 1
    revoke_old: bool = True


class TokenFailNextIn(_In):
    """`POST /_fake/oauth/fail-next`: answer the next `count` refreshes of `portal_id` (null: of
    any portal) with `status` (429 or 5xx, say) and `headers` (e.g. `Retry-After`)."""

    count: Positive = 1
    status: Status
    headers: dict[str, str] = Field(default_factory=dict)
    portal_id: int | None = None


class BatchIn(_In):
    """`POST /_fake/batch`: the batch upsert's maximum size, its status when `errors` is not
    empty (200 or 207), how an error names its input, and whether results are shuffled.

    Fields left out keep their current value.
    """

    max_size: Positive | None = None
    error_status: Literal[200, 207] | None = None
    error_pointer: Literal["external_id", "index", "none"] | None = None
    shuffle: bool | None = None


class RefuseIn(_In):
    """`POST /_fake/refuse`: refuse every write of one event (by `externalEventId`) with
    `message`, in a batch as an entry of `errors`, alone as a 400; `refuse: false` stops."""

    external_event_id: Text
    message: Text | None = None
    refuse: bool = True


def _reply(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body).encode(), status=status, content_type="application/json"
    )


_OK = {"ok": True}


async def _load(request: web.Request, model: type[_Model]) -> _Model:
    raw = await request.read()
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        raise web.HTTPBadRequest(
            text=json.dumps({"ok": False, "error": json.loads(json.dumps(errors, default=str))}),
            content_type="application/json",
        ) from exc


def _since(request: web.Request) -> int:
    try:
        return int(request.query.get("since", "0"))
    except ValueError as exc:
        raise web.HTTPBadRequest(
            text='{"ok": false, "error": "since must be an integer"}',
            content_type="application/json",
        ) from exc


def _state(request: web.Request) -> FakeState:
    return request.app[STATE]


async def reset(request: web.Request) -> web.Response:
    """Return everything to the startup configuration."""
    _state(request).reset()
    return _reply(_OK)


async def latency(request: web.Request) -> web.Response:
    """Set the latency of API answers."""
    data = await _load(request, LatencyIn)
    faults = _state(request).faults
    try:
        faults.set_latency(data.ms, data.min_ms, data.max_ms)
    except ValueError as exc:
        return _reply({"ok": False, "error": str(exc)}, 400)
    return _reply({"ok": True, **faults.latency_ms()})


async def fail_next(request: web.Request) -> web.Response:
    """Answer the next `count` writes (GETs too with `include_get`) with `status`, e.g. 400."""
    data = await _load(request, FailNextIn)
    injection = Injection(data.status, data.headers, data.body, data.include_get, data.count)
    _state(request).faults.fail_next(injection)
    return _reply(_OK)


async def failure_rate(request: web.Request) -> web.Response:
    """Set the random failure rate of creates."""
    data = await _load(request, FailureRateIn)
    _state(request).faults.set_failure_rate(data.rate, data.status)
    return _reply(_OK)


async def hang(request: web.Request) -> web.Response:
    """Make the next `count` creates never answer."""
    _state(request).faults.hang_next = (await _load(request, CountIn)).count
    return _reply(_OK)


async def release(request: web.Request) -> web.Response:
    """End every hung request now (their connections are closed without answer)."""
    _state(request).release_hung()
    return _reply(_OK)


async def close_after_create(request: web.Request) -> web.Response:
    """Make the next `count` writes store the event, then drop the connection."""
    _state(request).faults.close_next = (await _load(request, CountIn)).count
    return _reply(_OK)


async def close_rate(request: web.Request) -> web.Response:
    """Make a random fraction of writes store the event, then drop the connection."""
    _state(request).faults.set_close_rate((await _load(request, CloseRateIn)).rate)
    return _reply(_OK)


async def batch(request: web.Request) -> web.Response:
    """Change how the batch upsert behaves; answer the whole batch configuration."""
    data = await _load(request, BatchIn)
    state = _state(request)
    changes = data.model_dump(exclude_none=True)
    state.batch = dataclasses.replace(state.batch, **changes)
    return _reply({"ok": True, **dataclasses.asdict(state.batch)})


async def refuse(request: web.Request) -> web.Response:
    """Refuse (or stop refusing) one event's writes."""
    data = await _load(request, RefuseIn)
    message = data.message or (
        f"Marketing event {data.external_event_id} was refused (injected by the fake)"
    )
    _state(request).faults.refuse(data.external_event_id, message if data.refuse else None)
    return _reply(_OK)


async def rate_limit(request: web.Request) -> web.Response:
    """Set the global rolling limit and daily budget."""
    data = await _load(request, RateLimitIn)
    limit = None if data.requests is None else RateLimit(data.requests, data.window_ms)
    try:
        _state(request).limiter.configure(limit, data.daily, data.daily_timezone)
    except ValueError as exc:
        return _reply({"ok": False, "error": str(exc)}, 400)
    return _reply(_OK)


async def other_client(request: web.Request) -> web.Response:
    """Start (or replace, or with 0 requests stop) a simulated other client of a token's budget."""
    data = await _load(request, OtherClientIn)
    state = _state(request)
    found = state.auth.authenticate(f"Bearer {data.token}")
    if not isinstance(found, Identity):
        return _reply({"ok": False, "error": "unknown token"}, 400)
    if state.other_client is not None:
        state.other_client.stop()
        state.other_client = None
    if data.requests:
        state.other_client = OtherClient(
            state.limiter, found.name, found.portal_id, data.requests, data.window_ms
        )
    return _reply({"ok": True, "identity": found.name})


async def account_rate_limit(request: web.Request) -> web.Response:
    """Give one portal its own rolling limit."""
    data = await _load(request, PortalRateLimitIn)
    limit = None if data.requests is None else RateLimit(data.requests, data.window_ms)
    _state(request).limiter.configure_portal(data.portal_id, limit)
    return _reply(_OK)


async def add_token(request: web.Request) -> web.Response:
    """Accept one more private-app token; answer its identity name."""
    data = await _load(request, TokenIn)
    identity = _state(request).auth.add_static_token(data.token, data.app, data.scopes)
    return _reply({"ok": True, "identity": identity})


async def oauth(request: web.Request) -> web.Response:
    """Change the OAuth client, access-token lifetime or add refresh tokens."""
    data = await _load(request, OAuthIn)
    auth = _state(request).auth
    if data.client_id is not None:
        auth.client_id = data.client_id
    if data.client_secret is not None:
        auth.client_secret = data.client_secret
    if data.access_token_lifetime_s is not None:
        auth.lifetime_s = data.access_token_lifetime_s
    for item in data.refresh_tokens:
        auth.add_refresh_token(RefreshGrant(item.refresh_token, item.portal_id, tuple(item.scopes)))
    return _reply(_OK)


async def revoke(request: web.Request) -> web.Response:
    """Revoke a refresh token: refreshing with it then fails with `invalid_grant`."""
    data = await _load(request, RevokeIn)
    known = _state(request).auth.revoke(data.refresh_token, access_tokens=data.access_tokens)
    return _reply({"ok": True, "known": known})


async def rotate(request: web.Request) -> web.Response:
    """Make a portal's next refreshes rotate its refresh token."""
    data = await _load(request, RotateIn)
    _state(request).auth.rotate_next(data.portal_id, count=data.count, revoke_old=data.revoke_old)
    return _reply(_OK)


async def rotated(request: web.Request) -> web.Response:
    """Every refresh token issued by a rotation, oldest first (`portal_id`, `refresh_token`)."""
    return _reply(_state(request).auth.rotated)


async def token_fail_next(request: web.Request) -> web.Response:
    """Queue injected token-endpoint answers."""
    data = await _load(request, TokenFailNextIn)
    fault = TokenFault(data.status, data.headers, data.count, data.portal_id)
    _state(request).auth.fail_next(fault)
    return _reply(_OK)


async def requests(request: web.Request) -> web.Response:
    """Every recorded API request from `?since=` on, in arrival order."""
    return _reply(_state(request).recorder.since(_since(request)))


async def events(request: web.Request) -> web.Response:
    """Every created event from `?since=` on, in creation order."""
    return _reply(_state(request).events.records[max(0, _since(request)) :])


async def stats(request: web.Request) -> web.Response:
    """Counters: by status, creates, 429s by policy, refreshes per portal, hangs, faults."""
    return _reply(_state(request).stats())


_POSTS: dict[str, _Handler] = {
    "reset": reset,
    "latency": latency,
    "fail-next": fail_next,
    "failure-rate": failure_rate,
    "hang": hang,
    "release": release,
    "close-after-create": close_after_create,
    "close-rate": close_rate,
    "batch": batch,
    "refuse": refuse,
    "rate-limit": rate_limit,
    "account-rate-limit": account_rate_limit,
    "other-client": other_client,
    "tokens": add_token,
    "oauth": oauth,
    "oauth/revoke": revoke,
    "oauth/rotate": rotate,
    "oauth/fail-next": token_fail_next,
}
_GETS: dict[str, _Handler] = {
    "requests": requests,
    "events": events,
    "stats": stats,
    "oauth/rotated": rotated,
}


# the JSON body each POST route reads (None: none); its fields are listed by `routes_help`
_BODIES: dict[str, type[_In] | None] = {
    "reset": None,
    "latency": LatencyIn,
    "fail-next": FailNextIn,
    "failure-rate": FailureRateIn,
    "hang": CountIn,
    "release": None,
    "close-after-create": CountIn,
    "close-rate": CloseRateIn,
    "batch": BatchIn,
    "refuse": RefuseIn,
    "rate-limit": RateLimitIn,
    "account-rate-limit": PortalRateLimitIn,
    "other-client": OtherClientIn,
    "tokens": TokenIn,
    "oauth": OAuthIn,
    "oauth/revoke": RevokeIn,
    "oauth/rotate": RotateIn,
    "oauth/fail-next": TokenFailNextIn,
}


def routes_help() -> str:
    """Return one line per `/_fake/` route: method, path, the body's fields, what it does."""
    rows = [
        (f"POST /_fake/{name}", _fields(_BODIES[name]), _purpose(handler))
        for name, handler in _POSTS.items()
    ]
    rows += [(f"GET  /_fake/{name}", "", _purpose(handler)) for name, handler in _GETS.items()]
    route_width = max(len(route) for route, _, _ in rows)
    return "\n".join(
        f"  {route:<{route_width}}  {purpose}" + (f" Body: {body}" if body else "")
        for route, body, purpose in rows
    )


def _purpose(handler: _Handler) -> str:
    return (handler.__doc__ or "").strip().splitlines()[0]


def _fields(model: type[_In] | None) -> str:
    """Return the body's fields as `{status*, count, ...}` (`*`: required)."""
    if model is None:
        return ""
    names = [name + ("*" if f.is_required() else "") for name, f in model.model_fields.items()]
    return "{" + ", ".join(names) + "}"


def add_control_routes(router: web.UrlDispatcher) -> None:
    """Register every `/_fake/…` route on `router`."""
    for name, handler in _POSTS.items():
        router.add_post(f"/_fake/{name}", handler)
    for name, handler in _GETS.items():
        router.add_get(f"/_fake/{name}", handler)
