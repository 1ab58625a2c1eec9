"""Request and response bodies: JSON in (415, 413, 400 with position), models checked (422),
JSON out."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from producers.enqueue import field_errors
from producers.http_errors import ApiError
from producers.http_models import FieldProblem, JsonPosition

__all__ = [
    "JSON_TYPES",
    "json_response",
    "parse_json",
    "read_json",
    "validate_model",
    "validate_query",
]

M = TypeVar("M", bound=BaseModel)
JSON_TYPES = frozenset({"application/json"})
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "body_too_large", f"request body exceeds {limit} bytes")


async def read_json(request: web.Request, max_bytes: int) -> Any:
    """Return the request's JSON body; raise ApiError 415, 413 or 400 (with the position)."""
    if request.content_type not in JSON_TYPES:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"expected Content-Type: application/json, got {request.content_type}",
        )
    if request.content_length is not None and request.content_length > max_bytes:
        raise _too_large(max_bytes)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(max_bytes) from None
    return parse_json(raw)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(raw: bytes) -> Any:
    """Return the JSON document in `raw`; raise ApiError 400 saying where it went wrong."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ApiError(
            400,
            "malformed_json",
            f"body is not UTF-8 (byte {error.start})",
            position=_position(raw[: error.start].decode("utf-8", "replace"), error.start),
        ) from None
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        position = JsonPosition(line=error.lineno, column=error.colno, offset=error.pos)
        where = f"line {error.lineno} column {error.colno}"
        raise ApiError(
            400, "malformed_json", f"malformed JSON at {where}: {error.msg}", position=position
        ) from None
    except (ValueError, RecursionError) as error:
        message = str(error) if isinstance(error, ValueError) else "nesting too deep"
        raise ApiError(400, "malformed_json", f"malformed JSON: {message}") from None
    if _SURROGATE_ESCAPE.search(text):
        _check_encodable(document)
    return document


def _position(before: str, offset: int) -> JsonPosition:
    line = before.count("\n") + 1
    column = len(before) - (before.rfind("\n") + 1) + 1
    return JsonPosition(line=line, column=column, offset=offset)


def _check_encodable(document: Any) -> None:
    try:
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(
            400, "malformed_json", "malformed JSON: unpaired UTF-16 surrogate in a string"
        ) from None


def _problems(error: ValidationError, root: str) -> list[FieldProblem]:
    found = field_errors(error)
    return [
        FieldProblem(field=root if e.field == "event" else e.field, message=e.message)
        for e in found
    ]


def validate_model(model: type[M], data: Any, *, root: str = "body") -> M:
    """Return `data` validated as `model`; raise ApiError 422 with one problem per field."""
    if not isinstance(data, Mapping):
        raise ApiError(
            422,
            "validation_failed",
            "expected a JSON object",
            errors=[FieldProblem(field=root, message="expected a JSON object")],
        )
    try:
        return model.model_validate(dict(data))
    except ValidationError as error:
        problems = _problems(error, root)
        raise ApiError(422, "validation_failed", _summary(problems), errors=problems) from None


def validate_query(model: type[M], request: web.Request) -> M:
    """Return the query string validated as `model`; raise ApiError 422 naming the parameter."""
    return validate_model(model, dict(request.query), root="query")


def _summary(problems: list[FieldProblem]) -> str:
    first = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{first.field}: {first.message}{more}"


def json_response(model: BaseModel, status: int = 200) -> web.Response:
    """Return `model` as a JSON response."""
    return web.Response(
        status=status, body=model.model_dump_json(), content_type="application/json"
    )
