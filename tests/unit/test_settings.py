"""Settings: a missing or malformed variable stops startup with one line naming it."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from eventq.logs import configure_logging
from eventq.settings import RateLimit, SettingsError, load_settings
from worker.rate_limit import next_daily_reset


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("EVENTQ_RATE_LIMIT", "fast", "EVENTQ_RATE_LIMIT: expected a rate such as '190/10s'"),
        ("EVENTQ_MAX_ATTEMPTS", "0", "EVENTQ_MAX_ATTEMPTS: Input should be greater than 0"),
        ("EVENTQ_REDIS_URL", "localhost", "EVENTQ_REDIS_URL: expected a URL"),
        ("EVENTQ_API_KEYS", "justakey", "EVENTQ_API_KEYS: item 1 is not `name:key`"),
        (
            "EVENTQ_ADMIN_API_KEYS",
            "oncall:hunter2",
            "EVENTQ_ADMIN_API_KEYS: key 'oncall' is shorter than 16 characters",
        ),
        ("EVENTQ_LOG_FORMAT", "xml", "EVENTQ_LOG_FORMAT"),
        ("EVENTQ_OAUTH_CLIENT_ID", "abc", "OAuth mode needs"),
        ("EVENTQ_HUBSPOT_TIMEZONE", "Mars/Olympus", "EVENTQ_HUBSPOT_TIMEZONE: unknown time zone"),
        ("EVENTQ_RATE_LIMIT_CEILING", "lots", "EVENTQ_RATE_LIMIT_CEILING: expected a rate"),
        ("EVENTQ_PACK_SIZE", "0", "EVENTQ_PACK_SIZE: Input should be greater than or equal to 1"),
        ("EVENTQ_PACK_SIZE", "101", "EVENTQ_PACK_SIZE: Input should be less than or equal to 100"),
    ],
)
def test_a_malformed_setting_is_named_in_one_line(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, words: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_cli_reports_a_bad_setting_without_a_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "eventq", "status", "x"],
        capture_output=True,
        text=True,
        env={"EVENTQ_RATE_LIMIT": "nope", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 2
    assert "invalid setting EVENTQ_RATE_LIMIT" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_oauth_accounts_setting_is_one_line_and_does_not_stop_dlq_reads(
    real_redis_url: str, key_prefix: str
) -> None:
    # Given OAuth mode whose accounts setting is not JSON (read only when jobs are made)
    env = {
        "PATH": "/usr/bin:/bin",
        "EVENTQ_REDIS_URL": real_redis_url,
        "EVENTQ_KEY_PREFIX": key_prefix,
        "EVENTQ_OAUTH_CLIENT_ID": "client",
        "EVENTQ_OAUTH_CLIENT_SECRET": "secret",
        "EVENTQ_OAUTH_ACCOUNTS": "not json",
    }

    def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "eventq", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )

    # When the DLQ is read, and an event enqueued
    listed = cli("dlq", "list")
    enqueued = cli("enqueue", "-", stdin='{"eventName": "x"}')
    # Then the read works, and the enqueue stops with one line naming the setting
    assert listed.returncode == 0, listed.stderr
    assert "no dead-letter entries" in listed.stderr
    assert enqueued.returncode == 2
    assert "invalid setting EVENTQ_OAUTH_ACCOUNTS" in enqueued.stderr
    assert "Traceback" not in enqueued.stderr


@pytest.mark.parametrize(
    ("text", "requests", "window_s"),
    [
        ("190/10s", 190, 10.0),
        ("110/10s", 110, 10.0),
        ("5/500ms", 5, 0.5),
        ("60/m", 60, 60.0),
        ("10/s", 10, 1.0),
    ],
)
def test_rate_limits_parse(text: str, requests: int, window_s: float) -> None:
    limit = RateLimit.parse(text)
    assert (limit.requests, limit.window_s) == (requests, window_s)


def test_keys_are_secret_and_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTQ_API_KEYS", "billing:k1-0123456789abcdef, crm:k2-0123456789abcdef")
    settings = load_settings()
    assert set(settings.api_keys) == {"billing", "crm"}
    assert "k1-0123456789abcdef" not in repr(settings)
    assert settings.api_keys["billing"].get_secret_value() == "k1-0123456789abcdef"


def test_a_short_key_is_refused_without_printing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTQ_ADMIN_API_KEYS", "oncall:hunter2")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "hunter2" not in str(caught.value)


def test_log_lines_carry_their_fields_in_text_and_in_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(load_settings(log_format="text"))
    logging.getLogger("eventq.test").info("attempt delivered", extra={"jobId": "j1"})
    text_line = capsys.readouterr().err.strip()
    assert text_line.endswith("attempt delivered jobId=j1")
    assert "asctime=" not in text_line
    configure_logging(load_settings(log_format="json"))
    logging.getLogger("eventq.test").info("attempt delivered", extra={"jobId": "j1"})
    entry = json.loads(capsys.readouterr().err.strip())
    assert entry["jobId"] == "j1"
    assert entry["message"] == "attempt delivered"
    assert entry["level"] == "INFO"


def test_the_daily_reset_follows_the_accounts_time_zone() -> None:
    settings = load_settings(hubspot_timezone="Europe/Berlin")
    assert settings.daily_reset_zone.key == "Europe/Berlin"
    assert settings.daily_reset_setting == "EVENTQ_HUBSPOT_TIMEZONE"


@pytest.mark.parametrize(("hour", "zone"), [(0, "UTC"), (7, "Etc/GMT+7"), (20, "Etc/GMT-4")])
def test_the_deprecated_reset_hour_still_resets_at_that_hour_utc(hour: int, zone: str) -> None:
    settings = load_settings(daily_reset_utc_hour=hour)
    assert settings.daily_reset_zone.key == zone
    reset = next_daily_reset(
        datetime(2024, 3, 31, 12, tzinfo=UTC).timestamp(), settings.daily_reset_zone
    )
    assert datetime.fromtimestamp(reset, UTC).hour == hour
    assert "deprecated" in settings.daily_reset_setting


def test_the_deprecated_reset_hour_and_a_time_zone_together_are_refused() -> None:
    with pytest.raises(SettingsError, match="keep only EVENTQ_HUBSPOT_TIMEZONE"):
        load_settings(daily_reset_utc_hour=7, hubspot_timezone="Europe/Berlin")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("EVENTQ_API_KEYS", "svc:k1-0123456789abcdef,svc:k2-0123456789abcdef"),
        ("EVENTQ_ADMIN_API_KEYS", "svc:k1-0123456789abcdef, svc :k2-0123456789abcdef"),
        ("EVENTQ_API_KEYS", '{"svc": "k1-0123456789abcdef", "svc": "k2-0123456789abcdef"}'),
    ],
)
def test_a_key_name_given_twice_is_refused_naming_it_and_not_the_keys(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value) == (
        f"invalid setting {variable}: key name 'svc' is given twice; give each key its own name"
    )
    assert "k1-" not in str(caught.value)


def test_a_key_name_in_both_key_lists_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTQ_API_KEYS", "ops:k1-0123456789abcdef")
    monkeypatch.setenv("EVENTQ_ADMIN_API_KEYS", "ops:k2-0123456789abcdef")
    with pytest.raises(SettingsError, match="key name 'ops' is in both EVENTQ_API_KEYS and"):
        load_settings()


def test_eventq_serve_with_a_key_name_given_twice_exits_with_one_line_naming_it() -> None:
    keys = "svc:k1-0123456789abcdef,svc:k2-0123456789abcdef"
    result = subprocess.run(
        [sys.executable, "-m", "eventq", "serve"],
        capture_output=True,
        text=True,
        env={"EVENTQ_API_KEYS": keys, "PATH": "/usr/bin:/bin", "COLUMNS": "40"},
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: invalid setting EVENTQ_API_KEYS: key name 'svc' is given twice; "
        "give each key its own name"
    ]
