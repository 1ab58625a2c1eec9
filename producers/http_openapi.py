"""`GET /openapi.json`: OpenAPI 3.1 built from the route table and the routes' pydantic models."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from importlib import metadata
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from producers.http_models import ErrorBody
from producers.http_routes import Reply, Route
from producers.http_sessions import CSRF_HEADER, SESSION_COOKIE

__all__ = ["OPENAPI_DOC", "build_openapi", "openapi_routes"]

OPENAPI_DOC = web.AppKey("eventq_openapi", bytes)
_REF = "#/components/schemas/{model}"
_SECURITY_SCHEMES = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "A key of EVENTQ_API_KEYS (producer routes) or EVENTQ_ADMIN_API_KEYS.",
    },
    "adminSession": {
        "type": "apiKey",
        "in": "cookie",
        "name": SESSION_COOKIE,
        "description": f"The admin page's session; unsafe methods also need the {CSRF_HEADER} "
        "header holding the session's csrfToken (GET /admin/session).",
    },
}


def _version() -> str:
    try:
        return metadata.version("hubspot-event-queue")
    except metadata.PackageNotFoundError:
        return "0"


def _models(routes: Sequence[Route]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    found: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {(ErrorBody, "serialization"): None}
    for route in routes:
        if route.body is not None:
            found[(route.body, "validation")] = None
        for reply in route.responses.values():
            if not isinstance(reply, Reply):
                found[(reply, "serialization")] = None
    return list(found)


def _non_null(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Return a parameter schema without pydantic's `| None` branch (absent means null)."""
    result = {k: v for k, v in schema.items() if k not in ("anyOf", "default", "title")}
    options = [o for o in schema.get("anyOf", []) if o != {"type": "null"}]
    if len(options) == 1:
        result.update(options[0])
    elif options:
        result["anyOf"] = options
    if schema.get("default") is not None:
        result["default"] = schema["default"]
    return result


def _query_params(model: type[BaseModel], schemas: dict[str, Any]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(mode="validation", ref_template=_REF)
    schemas.update(schema.get("$defs", {}))
    required = set(schema.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": _non_null(prop)}
        for name, prop in schema["properties"].items()
    ]


def _parameters(route: Route, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    params = [
        {"name": name, "in": "path", "required": True, "schema": dict(schema)}
        for name, schema in route.path_params.items()
    ]
    params += [
        {"name": name, "in": "header", "required": False, "schema": dict(schema)}
        for name, schema in route.headers.items()
    ]
    if route.query is not None:
        params += _query_params(route.query, schemas)
    return params


def _reply(
    status: int | str, reply: type[BaseModel] | Reply, refs: Mapping[Any, Any]
) -> dict[str, Any]:
    if isinstance(reply, Reply):
        doc: dict[str, Any] = {"description": reply.description}
        if reply.media_type is not None:
            doc["content"] = {reply.media_type: {"schema": dict(reply.schema)}}
        if reply.headers:
            doc["headers"] = {h: {"schema": {"type": "string"}} for h in reply.headers}
        return doc
    description = HTTPStatus(int(status)).phrase if status != "default" else "Error"
    schema = refs[(reply, "serialization")]
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _responses(route: Route, refs: Mapping[Any, Any]) -> dict[str, Any]:
    replies: dict[int | str, type[BaseModel] | Reply] = {
        status: reply for status, reply in route.responses.items()
    }
    if route.access in ("producer", "admin", "session"):
        replies.setdefault(401, ErrorBody)
    if route.access in ("admin", "session"):
        replies.setdefault(403, ErrorBody)
    replies["default"] = ErrorBody
    return {str(status): _reply(status, reply, refs) for status, reply in replies.items()}


def _operation(route: Route, refs: Mapping[Any, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag],
        "responses": _responses(route, refs),
    }
    if route.handler.__doc__:
        operation["description"] = route.handler.__doc__.strip()
    parameters = _parameters(route, schemas)
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        schema = refs[(route.body, "validation")]
        operation["requestBody"] = {
            "required": True,
            "content": {route.body_media_type: {"schema": schema}},
        }
    if route.access in ("producer", "admin"):
        operation["security"] = [{"bearerAuth": []}, {"adminSession": []}]
    elif route.access == "session":
        operation["security"] = [{"adminSession": []}]
    return operation


def build_openapi(routes: Sequence[Route]) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of `routes`."""
    refs, top = models_json_schema(_models(routes), ref_template=_REF)
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation = _operation(route, refs, schemas)
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "eventq HTTP service",
            "version": _version(),
            "description": "Ingest HubSpot marketing events, look up jobs, administer the DLQ.",
        },
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": _SECURITY_SCHEMES},
    }


def encode_openapi(routes: Sequence[Route]) -> bytes:
    """Return the OpenAPI document of `routes` as JSON bytes."""
    return json.dumps(build_openapi(routes), indent=1, sort_keys=False).encode()


async def get_openapi(request: web.Request) -> web.Response:
    """Return this service's OpenAPI 3.1 document."""
    return web.Response(body=request.app[OPENAPI_DOC], content_type="application/json")


def openapi_routes() -> list[Route]:
    """Return the schema route."""
    doc = Reply("OpenAPI 3.1 document", "application/json", {"type": "object"})
    return [
        Route(
            "GET",
            "/openapi.json",
            get_openapi,
            "public",
            "getOpenApi",
            "This OpenAPI 3.1 document",
            "operations",
            {200: doc},
        )
    ]
