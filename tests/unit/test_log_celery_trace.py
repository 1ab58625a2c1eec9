"""Celery's trace log of a dead-lettered job (an expected exception) carries no traceback."""

from __future__ import annotations

import io
import json
import logging

import pytest

from eventq.logs import configure_logging
from eventq.settings import settings_from_env


@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.parametrize(
    ("description", "traceback_kept"), [("raised expected", False), ("raised unexpected", True)]
)
def test_only_an_expected_task_exception_loses_its_traceback(
    log_format: str, description: str, traceback_kept: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))  # restored after the test
    configure_logging(settings_from_env({"EVENTQ_LOG_FORMAT": log_format}))
    data = {"id": "t-1", "description": description, "traceback": "Traceback (most recent…)"}
    trace = logging.getLogger("celery.app.trace")
    trace.info("Task %s %s", "t-1", description, extra={"data": data})
    line = stream.getvalue()
    assert "t-1" in line
    assert ("Traceback" in line) is (traceback_kept and log_format == "json")
    if log_format == "json":
        assert json.loads(line)["data"]["id"] == "t-1"
