"""Small Redis helpers every store uses: our Lua scripts' text, replies as text, typed awaits."""

from __future__ import annotations

from collections.abc import Awaitable
from functools import cache
from importlib import resources
from typing import Any, cast

__all__ = ["as_text", "glob_escape", "load_lua", "wait"]


@cache
def load_lua(name: str, package: str = "eventq") -> str:
    """Return the text of the Lua script `<package>/lua/<name>.lua` (eventq's or worker's)."""
    return resources.files(package).joinpath(f"lua/{name}.lua").read_text(encoding="utf-8")


def as_text(value: Any) -> str:
    """A Redis reply as text, whether the client decodes responses or not."""
    return value.decode() if isinstance(value, bytes) else str(value)


def wait(reply: Any) -> Awaitable[Any]:
    """Type an async redis-py reply (its stubs merge the sync and async clients)."""
    return cast(Awaitable[Any], reply)


def glob_escape(text: str) -> str:
    """Return `text` as a literal inside a Redis MATCH pattern (`*`, `?`, `[`, `]`, `\\`)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
