"""The pure parts of `eventq doctor`: settings read with their errors, the budget eventq will
use, the clock verdict, Flower's login, the secrets the report must not show, the report."""

from __future__ import annotations

import asyncio
from email.utils import formatdate
from typing import Any

import pytest

from eventq.settings import Settings
from eventq_cli.doctor import exit_code, render, run_doctor
from eventq_cli.doctor_checks import (
    Check,
    check_clock,
    check_flower,
    planned_budget,
    read_settings,
    secrets_of,
)

NOW = 1_800_000_000.0


def settings(**values: Any) -> Settings:
    return Settings(**values)


def test_an_invalid_key_is_a_fail_line_naming_the_setting_and_the_rest_is_read() -> None:
    found, checks, invalid = read_settings({"api_keys": "svc:0123456789", "max_attempts": "3"})

    assert found is not None
    assert found.max_attempts == 3
    assert found.api_keys == {}
    assert invalid == {"api_keys"}
    assert [c.name for c in checks] == ["setting EVENTQ_API_KEYS"]
    assert checks[0].status == "fail"
    assert "shorter than 16 characters" in checks[0].detail
    assert "0123456789" not in checks[0].detail + checks[0].fix


def test_every_invalid_setting_gets_its_own_line() -> None:
    _, checks, invalid = read_settings({"max_attempts": "zero", "redis_url": "localhost"})

    assert invalid == {"max_attempts", "redis_url"}
    assert {c.name for c in checks} == {"setting EVENTQ_MAX_ATTEMPTS", "setting EVENTQ_REDIS_URL"}


def test_good_settings_are_one_ok_line_with_the_mode() -> None:
    _, checks, _ = read_settings({"hubspot_access_token": "t" * 20})

    assert checks == [Check("settings", "ok", "read (private-app token)")]


def test_the_budget_is_hubspots_reported_one_less_the_margin() -> None:
    headers = {
        "X-HubSpot-RateLimit-Max": "190",
        "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
    }

    budget = planned_budget(settings(rate_limit_margin=0.05), headers, oauth=False)

    assert (budget.requests, budget.window_s) == (180, 10.0)


def test_the_budget_never_rises_above_the_ceiling() -> None:
    headers = {
        "x-hubspot-ratelimit-max": "500",
        "x-hubspot-ratelimit-interval-milliseconds": "10000",
    }

    assert planned_budget(settings(), headers, oauth=False).requests == 250


def test_without_headers_the_budget_is_the_configured_one() -> None:
    chosen = settings(rate_limit="50/10s", account_rate_limit="110/10s")

    assert planned_budget(chosen, {}, oauth=False).requests == 50
    assert planned_budget(chosen, {}, oauth=True).requests == 110


@pytest.mark.parametrize(
    ("offset_s", "status"), [(0.0, "ok"), (-1.5, "ok"), (10.0, "warn"), (-120.0, "fail")]
)
def test_the_clock_verdict_follows_the_skew(offset_s: float, status: str) -> None:
    headers = {"Date": formatdate(NOW, usegmt=True)}

    check = check_clock(headers, NOW + offset_s)

    assert check.status == status
    if status != "ok":
        assert "NTP" in check.fix


def test_a_missing_date_header_is_a_warning() -> None:
    assert check_clock({}, NOW).status == "warn"


@pytest.mark.parametrize(
    ("auth", "status", "said"),
    [
        ("", "warn", "FLOWER_BASIC_AUTH is not set"),
        ("ops:" + "p" * 16, "ok", "passwords ≥ 16"),
        ("ops:" + "p" * 16 + ",dev:tiny-pw", "fail", "Flower user 'dev' is shorter than 16"),
        ("nocolon", "fail", "item 1 is not user:password"),
    ],
)
def test_flowers_login_needs_long_passwords(auth: str, status: str, said: str) -> None:
    check = check_flower({"FLOWER_BASIC_AUTH": auth} if auth else {})

    assert check.status == status
    assert said in check.detail
    assert "tiny-pw" not in check.detail + check.fix


def test_the_secrets_to_hide_include_tokens_keys_and_flower_passwords() -> None:
    chosen = settings(hubspot_access_token="tok-" + "x" * 20, admin_api_keys="ops:" + "k" * 16)

    found = secrets_of(chosen, {"FLOWER_BASIC_AUTH": "ops:flowerpassword1", "EVENTQ_QUEUE": "q"})

    assert {"tok-" + "x" * 20, "k" * 16, "flowerpassword1"} <= set(found)
    assert "q" not in found


def test_the_report_marks_each_check_and_exits_1_on_any_fail() -> None:
    checks = [
        Check("Redis", "ok", "reachable"),
        Check("clock", "warn", "10 s ahead", "sync it"),
        Check("Redis eviction", "fail", "allkeys-lru", "set noeviction"),
    ]

    text = render(checks).plain

    assert "✓ Redis" in text
    assert "! clock" in text
    assert "✗ Redis eviction" in text
    assert "→ set noeviction" in text
    assert "1 ✗, 1 !, 1 ✓: not ready to go live" in text
    assert exit_code(checks) == 1
    assert exit_code(checks[:2]) == 0


def test_services_behind_an_invalid_setting_are_not_checked_with_its_default() -> None:
    token = "tok-" + "y" * 20
    overrides = {
        "redis_url": "localhost:6379",
        "hubspot_base_url": "ftp://hubspot",
        "hubspot_access_token": token,
    }

    checks = asyncio.run(run_doctor(overrides, {}, timeout_s=1.0))

    lines = {c.name: c for c in checks}
    assert lines["setting EVENTQ_REDIS_URL"].status == "fail"
    assert lines["setting EVENTQ_HUBSPOT_BASE_URL"].status == "fail"
    assert lines["Redis and broker"].detail == "not checked: EVENTQ_REDIS_URL is invalid (above)"
    assert lines["HubSpot"].detail == "not checked: EVENTQ_HUBSPOT_BASE_URL is invalid (above)"
    assert "Redis" not in lines
    assert not any(name.startswith("HubSpot token") for name in lines)
    assert exit_code(checks) == 1
