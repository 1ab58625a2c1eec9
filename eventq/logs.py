"""Logging for every eventq process: readable text in development, one JSON object per line in
production (`EVENTQ_LOG_FORMAT`).

Values that come from users (event fields, ids, paths, header values) reach log messages and
`extra=` fields, so no value may end a line: the text format writes every control character of
the message and the extra fields as a backslash escape (a newline as `\\x0a`), the JSON format
writes them as JSON escapes (`\\n`, `\\u007f`). Either way one record is one line.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from eventq.settings import Settings

__all__ = ["JsonFormatter", "TextFormatter", "configure_logging", "escape_controls"]

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: anything a terminal or
# a log shipper may take for the end of a line.
_CONTROLS = re.compile("[\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """Return `text` with every control character written as a backslash escape (`\\x0a`)."""
    return _CONTROLS.sub(_escape, text)


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
        # ensure_ascii escapes C0 and C1 controls and U+2028/9; DEL is escaped by hand
        return json.dumps(entry, default=str, ensure_ascii=True).replace("\x7f", "\\u007f")


class TextFormatter(logging.Formatter):
    """Format a record as one line of text, its `extra=` fields appended as `key=value`."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        """Return the record's line with its message's control characters escaped."""
        record.message = escape_controls(record.message)
        line = super().formatMessage(record)
        extra = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        if record.name == _CELERY_TRACE:
            extra.pop("data", None)  # Celery's trace: the message already says all of it
        if not extra:
            return line
        fields = " ".join(f"{k}={escape_controls(str(v))}" for k, v in extra.items())
        return f"{line} {fields}"


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
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_ExpectedWithoutTraceback())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in ("eventq", "celery"):
        logging.getLogger(name).setLevel(settings.log_level)
