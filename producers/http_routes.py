"""The route table: each route's handler, access level and documented models in one record.

The router, the authentication middleware and `/openapi.json` all read the same records, so the
published schema cannot drift from what the service does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp.typedefs import Handler
from pydantic import BaseModel

__all__ = ["Access", "Reply", "Route"]

Access = Literal["public", "producer", "admin", "session", "page"]
"""Who may call a route.

public    anyone (health, metrics, the schema, the login form)
producer  a producer key, an admin key, or an admin-page session (+ CSRF token when unsafe)
admin     an admin key, or an admin-page session (+ CSRF token when unsafe)
session   an admin-page session only (+ CSRF token when unsafe)
page      an HTML page that sends visitors without a session to the login form
"""


@dataclass(frozen=True)
class Reply:
    """A documented answer that is not a JSON model: HTML, text, or a redirect."""

    description: str
    media_type: str | None = None
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Route:
    """One route: what serves it, who may call it, and what it takes and answers."""

    method: str
    path: str
    handler: Handler
    access: Access
    operation_id: str
    summary: str
    tag: str
    responses: Mapping[int, type[BaseModel] | Reply]
    body: type[BaseModel] | None = None
    body_media_type: str = "application/json"
    query: type[BaseModel] | None = None
    path_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    headers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def unsafe(self) -> bool:
        """Return True for methods that change state (these need a CSRF token with a session)."""
        return self.method not in ("GET", "HEAD", "OPTIONS")
