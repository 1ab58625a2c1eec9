"""The aiohttp application: HubSpot's marketing-event and OAuth routes, plus `/_fake/` control."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from fake_hubspot.admin import add_control_routes
from fake_hubspot.auth import AuthFailure, Identity, RefreshFailure, TokenFault
from fake_hubspot.batch import batch_request_error
from fake_hubspot.config import READ_SCOPE, WRITE_SCOPE, FakeConfig
from fake_hubspot.errors import (
    category_for_status,
    error_body,
    invalid_message,
    missing_scope_body,
    oauth_error_body,
    rate_limit_body,
)
from fake_hubspot.faults import Injection
from fake_hubspot.ratelimit import TEN_SECONDLY
from fake_hubspot.state import STATE, FakeState

__all__ = [
    "BATCH_UPSERT_PATH",
    "CREATE_PATH",
    "INTROSPECT_PATH",
    "LISTS_PATH",
    "STATE",
    "TOKEN_PATH",
    "TOKEN_V1_PATH",
    "create_app",
]

CREATE_PATH = "/marketing/v3/marketing-events/events"
BATCH_UPSERT_PATH = CREATE_PATH + "/upsert"
TOKEN_PATH = "/oauth/v3/token"  # noqa: S105 - a URL path (the one eventq uses), not a secret
TOKEN_V1_PATH = "/oauth/v1/token"  # noqa: S105 - deprecated, switched off on 2027-02-16
INTROSPECT_PATH = "/oauth/v3/token/introspect"
LISTS_PATH = (
    "/marketing/v3/marketing-events/associations/{externalAccountId}/{externalEventId}/lists"
)
_NO_BODY = frozenset({204, 304})
_NOT_JSON = object()


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    if status in _NO_BODY or status < 200:
        return web.Response(status=status, headers=headers)
    return web.Response(
        body=json.dumps(body).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return _NOT_JSON


def _finish(state: FakeState, record: dict[str, Any], response: web.Response) -> web.Response:
    state.recorder.answer(record, response.status)
    return response


def _drop(state: FakeState, request: web.Request, record: dict[str, Any] | None) -> web.Response:
    """Close the connection without an answer (the client sees a disconnect)."""
    if request.transport is not None:
        request.transport.close()
    if record is not None:
        state.recorder.drop(record)
    # Never sent: the transport is closed, aiohttp drops it as a premature disconnect.
    return web.Response(status=499)


def _injected(state: FakeState, injection: Injection, headers: dict[str, str]) -> web.Response:
    state.recorder.injected += 1
    status = injection.status
    merged = CIMultiDict(headers)
    merged.update(injection.headers)
    body = injection.body
    if body is None:
        if status == 429:
            body = rate_limit_body(TEN_SECONDLY, "publicapi:injected")
        else:
            body = error_body(category_for_status(status), f"Injected failure (HTTP {status})")
    if status in _NO_BODY or status < 200:
        return web.Response(status=status, headers=merged)
    if isinstance(body, str) and "Content-Type" in merged:
        return web.Response(text=body, status=status, headers=merged)
    if isinstance(body, str):
        return web.Response(text=body, status=status, headers=merged, content_type="text/plain")
    merged.setdefault("Content-Type", "application/json")
    return web.Response(body=json.dumps(body).encode(), status=status, headers=merged)


def _admit(
    state: FakeState, request: web.Request, record: dict[str, Any], scope: str
) -> tuple[Identity, dict[str, str]] | web.Response:
    """Authenticate, rate-limit and scope-check an API request."""
    found = state.auth.authenticate(request.headers.get("Authorization"))
    if isinstance(found, AuthFailure):
        return _json(401, error_body(found.category, found.message))
    record["identity"] = found.name
    decision = state.limiter.check(found.name, found.portal_id)
    if decision.policy is not None:
        state.recorder.rate_limited[decision.policy] += 1
        body = rate_limit_body(decision.policy, f"publicapi:{found.name}")
        return _json(429, body, decision.headers)
    if not found.allows(scope):
        return _json(403, missing_scope_body(scope), decision.headers)
    return found, decision.headers


async def create_event(request: web.Request) -> web.Response:
    """`POST /marketing/v3/marketing-events/events`: validate, store, echo with `objectId`."""
    state = request.app[STATE]
    record = state.recorder.open(request.method, request.path, dict(request.query))
    state.recorder.creates += 1
    return await _write(request, record, _invalid_body, _store_created)


async def upsert_event(request: web.Request) -> web.Response:
    """`PUT /marketing/v3/marketing-events/events/{externalEventId}`: create or update.

    The body is a create body; the event is the one the path names (its `externalEventId`
    wins over the body's). Answers `MarketingEventPublicDefaultResponse` (`id`, `objectId`).
    """
    state = request.app[STATE]
    record = state.recorder.open(request.method, request.path, dict(request.query))
    state.recorder.upserts += 1
    return await _write(request, record, _invalid_body, _store_upserted)


async def upsert_batch(request: web.Request) -> web.Response:
    """`POST /marketing/v3/marketing-events/events/upsert`: create or update each input.

    One rate-limit slot per request; a request over the maximum batch size answers 400 naming
    the limit; each refused input is a `StandardError` in `errors` (fake_hubspot.batch).
    """
    state = request.app[STATE]
    record = state.recorder.open(request.method, request.path, dict(request.query))
    state.recorder.batch_upserts += 1
    return await _write(request, record, _invalid_batch, _store_batch)


def _path_id(body: Any, request: web.Request) -> Any:
    """Return a PUT's body with the path's `externalEventId` (which wins), else `body`."""
    external = request.match_info.get("externalEventId")
    if external is None or not isinstance(body, dict):
        return body
    return {**body, "externalEventId": external}


def _store_created(state: FakeState, identity: Identity, body: Any) -> tuple[int, Any]:
    return 200, state.events.create_response(state.events.create(identity.name, body))


def _store_upserted(state: FakeState, identity: Identity, body: Any) -> tuple[int, Any]:
    return 200, state.events.upsert_response(state.events.upsert(identity.name, body))


def _store_batch(state: FakeState, identity: Identity, body: Any) -> tuple[int, Any]:
    state.recorder.batch_inputs += len(body["inputs"])
    return state.batch_upsert().answer(identity, body["inputs"])


_Check = Callable[[FakeState, Any], "dict[str, Any] | None"]
_Store = Callable[[FakeState, Identity, Any], tuple[int, Any]]


async def _write(
    request: web.Request, record: dict[str, Any], check: _Check, store: _Store
) -> web.Response:
    """Admit, fault-inject, check and store a write; faults apply to every write alike."""
    state = request.app[STATE]
    body = _parse_json(await request.read())
    record["body"] = None if body is _NOT_JSON else body
    body = _path_id(body, request)
    await state.faults.delay()
    admitted = _admit(state, request, record, WRITE_SCOPE)
    if isinstance(admitted, web.Response):
        return _finish(state, record, admitted)
    identity, headers = admitted
    if state.faults.take_hang():
        return _drop(state, request, record if await state.hang() else None)
    injection = state.faults.take_injection(is_create=True)
    if injection is not None:
        return _finish(state, record, _injected(state, injection, headers))
    invalid = check(state, body)
    if invalid is not None:
        return _finish(state, record, _json(400, invalid, headers))
    status, answer = store(state, identity, body)
    if state.faults.take_close():
        return _drop(state, request, record)
    return _finish(state, record, _json(status, answer, headers))


def _invalid_batch(state: FakeState, body: Any) -> dict[str, Any] | None:
    """Return HubSpot's 400 body for a request that is not a batch within the size, else None."""
    if body is _NOT_JSON:
        return _invalid_body(state, body)
    return batch_request_error(body, state.batch.max_size)


def _invalid_body(state: FakeState, body: Any) -> dict[str, Any] | None:
    """Return HubSpot's 400 body for a body that is not JSON, not valid or refused, else None."""
    if body is _NOT_JSON:
        detail = {"message": "The request body is not valid JSON", "in": "body"}
        return error_body("VALIDATION_ERROR", "Invalid input JSON: not parseable", [detail])
    errors = state.validator.errors(body)
    if errors:
        return error_body("VALIDATION_ERROR", invalid_message(errors), errors)
    refused = state.faults.refused.get(str(body["externalEventId"]))
    if refused is not None:
        detail = {"message": refused, "in": "externalEventId"}
        return error_body("VALIDATION_ERROR", refused, [detail])
    return None


async def read_event(request: web.Request) -> web.Response:
    """`GET /marketing/v3/marketing-events/events/{externalEventId}?externalAccountId=…`."""
    state = request.app[STATE]
    record = state.recorder.open(request.method, request.path, dict(request.query))
    await state.faults.delay()
    admitted = _admit(state, request, record, READ_SCOPE)
    if isinstance(admitted, web.Response):
        return _finish(state, record, admitted)
    identity, headers = admitted
    injection = state.faults.take_injection(is_create=False)
    if injection is not None:
        return _finish(state, record, _injected(state, injection, headers))
    account = request.query.get("externalAccountId")
    external = request.match_info["externalEventId"]
    if not account:
        detail = {"message": "Required query parameter is missing", "in": "externalAccountId"}
        answer = error_body("VALIDATION_ERROR", "externalAccountId is required", [detail])
        return _finish(state, record, _json(400, answer, headers))
    event = state.events.find(identity.name, account, external)
    if event is None:
        return _finish(state, record, _json(404, _not_found_event(external, account), headers))
    return _finish(state, record, _json(200, state.events.read_response(event), headers))


def _not_found_event(external: str, account: str) -> dict[str, Any]:
    message = (
        f"Marketing event not found for externalEventId {external} and externalAccountId {account}"
    )
    return error_body("OBJECT_NOT_FOUND", message)


async def delete_event(request: web.Request) -> web.Response:
    """`DELETE /marketing/v3/marketing-events/events/{externalEventId}?externalAccountId=…`:
    204 when the caller's event existed and is gone, 404 otherwise (write scope)."""
    state = request.app[STATE]
    record = state.recorder.open(request.method, request.path, dict(request.query))
    admitted = _admit(state, request, record, WRITE_SCOPE)
    if isinstance(admitted, web.Response):
        return _finish(state, record, admitted)
    identity, headers = admitted
    account = request.query.get("externalAccountId", "")
    external = request.match_info["externalEventId"]
    if not state.events.delete(identity.name, account, external):
        return _finish(state, record, _json(404, _not_found_event(external, account), headers))
    return _finish(state, record, _json(204, None, headers))


async def event_lists(request: web.Request) -> web.Response:
    """`GET` LISTS_PATH: the lists associated with an event (the fake has none), 404 for an
    unknown event.

    A read that HubSpot's spec guards with the write scope: `eventq doctor` uses it to prove the
    write scope without writing anything.
    """
    state = request.app[STATE]
    record = state.recorder.open(request.method, request.path, dict(request.query))
    admitted = _admit(state, request, record, WRITE_SCOPE)
    if isinstance(admitted, web.Response):
        return _finish(state, record, admitted)
    identity, headers = admitted
    account, external = (
        request.match_info["externalAccountId"],
        request.match_info["externalEventId"],
    )
    if state.events.find(identity.name, account, external) is None:
        return _finish(state, record, _json(404, _not_found_event(external, account), headers))
    return _finish(state, record, _json(200, {"total": 0, "results": []}, headers))


async def introspect_token(request: web.Request) -> web.Response:
    """`POST /oauth/v3/token/introspect`: the metadata of an access or refresh token (form:
    client_id, client_secret, token_type_hint and the token as `token`, `access_token` or
    `refresh_token`), as HubSpot's v3 OAuth guide shows it."""
    state = request.app[STATE]
    record = state.recorder.open(request.method, request.path, dict(request.query))
    form = await request.post()
    hint = str(form.get("token_type_hint", ""))
    record["body"] = {"token_type_hint": hint, "client_id": form.get("client_id")}
    refused = state.auth.check_client(
        _form_text(form, "client_id"), _form_text(form, "client_secret")
    )
    if refused is not None:
        answer = oauth_error_body(refused.status, refused.error, refused.message)
        return _finish(state, record, _json(refused.http_status, answer))
    token = _form_text(form, "token") or _form_text(form, hint) or ""
    return _finish(state, record, _json(200, state.auth.introspect(token)))


def _form_text(form: Any, name: str) -> str | None:
    value = form.get(name) if name else None
    return None if value is None else str(value)


def _token_fault(fault: TokenFault) -> web.Response:
    if fault.status == 429:
        body = rate_limit_body(TEN_SECONDLY, "oauth:token")
    else:
        body = error_body(category_for_status(fault.status), f"Injected failure ({fault.status})")
    return _json(fault.status, body, fault.headers)


async def refresh_token(request: web.Request) -> web.Response:
    """`POST /oauth/v3/token` (or the deprecated `/oauth/v1/token`) with
    `grant_type=refresh_token`: issue a new access token.

    v3 answers also carry `hub_id` and `scopes` (the grant's), as HubSpot's v3 does; v1 answers
    as it always did here. Either may rotate the refresh token or answer an injected fault.
    """
    state = request.app[STATE]
    record = state.recorder.open(request.method, request.path, dict(request.query))
    form = await request.post()
    fields = {
        name: str(form[name])
        for name in ("client_id", "client_secret", "refresh_token")
        if name in form
    }
    grant_type = str(form.get("grant_type", ""))
    record["body"] = {"grant_type": grant_type, "client_id": fields.get("client_id")}
    await state.faults.delay()
    fault = state.auth.take_fault(fields.get("refresh_token"))
    if fault is not None:
        state.recorder.injected += 1
        return _finish(state, record, _token_fault(fault))
    if grant_type != "refresh_token":
        answer = oauth_error_body(
            "BAD_GRANT_TYPE", "unsupported_grant_type", "grant_type must be refresh_token"
        )
        return _finish(state, record, _json(400, answer))
    result = state.auth.refresh(
        fields.get("client_id"), fields.get("client_secret"), fields.get("refresh_token")
    )
    if isinstance(result, RefreshFailure):
        answer = oauth_error_body(result.status, result.error, result.message)
        return _finish(state, record, _json(result.http_status, answer))
    record["identity"] = f"portal:{result.portal_id}"
    granted: dict[str, Any] = {
        "token_type": "bearer",
        "refresh_token": result.refresh_token,
        "access_token": result.access_token,
        "expires_in": result.expires_in,
    }
    if request.path == TOKEN_PATH:
        granted["hub_id"] = result.portal_id
        granted["scopes"] = list(result.scopes)
    return _finish(state, record, _json(200, granted, {"Cache-Control": "no-store"}))


async def not_found(request: web.Request) -> web.Response:
    """Any other path: HubSpot-shaped 404 (recorded unless it is under `/_fake/`)."""
    state = request.app[STATE]
    answer = error_body(
        "OBJECT_NOT_FOUND", f"Unable to route {request.method} request to {request.path}"
    )
    response = _json(404, answer)
    if not request.path.startswith("/_fake/"):
        record = state.recorder.open(request.method, request.path, dict(request.query))
        _finish(state, record, response)
    return response


async def _release_hung(app: web.Application) -> None:
    app[STATE].release_hung()


def create_app(config: FakeConfig | None = None) -> web.Application:
    """Return the fake HubSpot application, starting from `config` (defaults: FakeConfig())."""
    app = web.Application()
    state = FakeState(config or FakeConfig())
    app[STATE] = state
    app.router.add_post(CREATE_PATH, create_event)
    app.router.add_post(BATCH_UPSERT_PATH, upsert_batch)
    app.router.add_get(CREATE_PATH + "/{externalEventId}", read_event)
    app.router.add_put(CREATE_PATH + "/{externalEventId}", upsert_event)
    app.router.add_delete(CREATE_PATH + "/{externalEventId}", delete_event)
    app.router.add_get(LISTS_PATH, event_lists)
    app.router.add_post(INTROSPECT_PATH, introspect_token)
    app.router.add_post(TOKEN_PATH, refresh_token)
    app.router.add_post(TOKEN_V1_PATH, refresh_token)
    add_control_routes(app.router)
    app.router.add_route("*", "/{tail:.*}", not_found)
    app.on_shutdown.append(_release_hung)
    return app
