"""Log lines: control characters in user values are escaped in the text and the JSON format."""

from __future__ import annotations

import json
import logging

from eventq.logs import JsonFormatter, TextFormatter, escape_controls

FORGED = "nl-1\nFORGED LINE eventq.attempt outcome=delivered\r\x1b[2J\x7f\x85\u2028"


def _record() -> logging.LogRecord:
    record = logging.LogRecord("eventq.attempt", logging.INFO, "", 0, "event %s", (FORGED,), None)
    record.externalEventId = FORGED
    return record


def test_escape_controls_writes_every_control_character_as_an_escape() -> None:
    assert escape_controls(FORGED) == (
        "nl-1\\x0aFORGED LINE eventq.attempt outcome=delivered\\x0d\\x1b[2J\\x7f\\x85\\u2028"
    )
    assert escape_controls("plain café ü") == "plain café ü"


def test_a_value_with_newlines_stays_on_one_text_line_in_message_and_extra_fields() -> None:
    line = TextFormatter("%(levelname)s %(name)s: %(message)s").format(_record())
    assert line.splitlines() == [line]
    assert line.startswith("INFO eventq.attempt: event nl-1\\x0aFORGED LINE")
    assert "externalEventId=nl-1\\x0aFORGED LINE" in line


def test_a_value_with_newlines_stays_on_one_json_line_and_reads_back_unchanged() -> None:
    line = JsonFormatter().format(_record())
    assert line.splitlines() == [line]
    assert "\x7f" not in line
    assert "\x85" not in line
    assert "\u2028" not in line
    entry = json.loads(line)
    assert entry["message"] == f"event {FORGED}"
    assert entry["externalEventId"] == FORGED
