"""What every `eventq` command shares: the two consoles and turning known failures into one line."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import kombu.exceptions
import redis
from rich.console import Console

from eventq.settings import Settings, SettingsError, get_settings
from eventq_cli.ids import AmbiguousId, UnknownId

__all__ = ["err", "friendly_errors", "out", "settings_or_exit"]

F = TypeVar("F", bound=Callable[..., Any])
out = Console()
err = Console(stderr=True, soft_wrap=True)  # messages are never broken at the 80th column


def settings_or_exit() -> Settings:
    """Return the settings, or exit 2 with one line naming the bad variable."""
    try:
        return get_settings()
    except SettingsError as error:
        err.print(f"[red]error:[/red] {error}")
        raise SystemExit(2) from None


def friendly_errors(func: F) -> F:
    """Turn Redis/broker outages (exit 1), settings read late, such as the OAuth accounts file
    (exit 2, as `settings_or_exit`), and an unknown or ambiguous id (exit 1) into one clear
    message instead of a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (redis.ConnectionError, kombu.exceptions.OperationalError) as error:
            err.print(f"[red]error:[/red] cannot reach Redis or the broker: {error}")
            raise SystemExit(1) from None
        except SettingsError as error:
            err.print(f"[red]error:[/red] {error}")
            raise SystemExit(2) from None
        except (UnknownId, AmbiguousId) as error:
            err.print(f"[red]error:[/red] {error}", highlight=False)
            raise SystemExit(1) from None

    return wrapper  # type: ignore[return-value]
