"""Logging for every eventq process: readable text in development, one JSON object per line in
production (`EVENTQ_LOG_FORMAT`)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from eventq.settings import Settings

__all__ = ["JsonFormatter", "configure_logging"]

_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
}


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON line, with its `extra=` fields as top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the JSON line for `record`."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extra = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        if record.name == _CELERY_TRACE:
            extra.pop("data", None)  # Celery's trace: the message already says all of it
        if not extra:
            return base
        return base + " " + " ".join(f"{k}={v}" for k, v in extra.items())


_CELERY_TRACE = "celery.app.trace"


class _ExpectedWithoutTraceback(logging.Filter):
    """Drop the traceback Celery's trace attaches to an *expected* task exception (a job
    dead-lettered: `throws=`): the outcome is the news, the stack of the task wrapper is not."""

    def filter(self, record: logging.LogRecord) -> bool:
        data = getattr(record, "data", None)
        if record.name != _CELERY_TRACE or not isinstance(data, dict):
            return True
        if data.get("description") == "raised expected" and "traceback" in data:
            record.data = {k: v for k, v in data.items() if k != "traceback"}
        return True


def configure_logging(settings: Settings) -> None:
    """Send eventq's and Celery's logs to stderr in the configured format and level."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_ExpectedWithoutTraceback())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in ("eventq", "celery"):
        logging.getLogger(name).setLevel(settings.log_level)
