"""`eventq doctor` against the fake HubSpot and real Redis servers: all ✓ with good settings, the
matching ✗ (exit 1) for each way a deployment is not ready, and never a secret in the report.

Doctor runs in-process (`run_doctor`); one test runs the command for its exit code and --json.
Redis is a private `redis-server` with AOF on (the shared one keeps nothing on disk, a ✗), so a
test may set its eviction policy.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from eventq_cli.doctor import exit_code, render, run_doctor
from eventq_cli.doctor_checks import Check
from eventq_cli.stack import start_redis
from fake_hubspot.config import READ_SCOPE, WRITE_SCOPE
from fake_hubspot.control import FakeHubSpot, free_port

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = "k-" + secrets.token_urlsafe(18)
ADMIN_KEY = "a-" + secrets.token_urlsafe(18)
FLOWER_PASSWORD = "f-" + secrets.token_urlsafe(18)
ENVIRON = {"FLOWER_BASIC_AUTH": f"ops:{FLOWER_PASSWORD}"}


@pytest.fixture(scope="module")
def aof_redis_url() -> Iterator[str]:
    """A private redis-server as `eventq run` starts it (AOF everysec, noeviction)."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    with tempfile.TemporaryDirectory(prefix="eventq-doctor-redis-") as workdir:
        proc = start_redis(url, Path(workdir), ready_timeout_s=15)
        if proc is None:
            pytest.fail("could not start redis-server")
        try:
            yield url
        finally:
            proc.terminate()
            proc.wait(10)


@pytest.fixture
def read_write_token(fake: FakeHubSpot) -> str:
    token = "rw-" + secrets.token_hex(16)
    fake.add_token(token, app="doctor-rw", scopes=[WRITE_SCOPE, READ_SCOPE])
    fake.set_rate_limit(100, 10_000)
    return token


def good_settings(fake: FakeHubSpot, redis_url: str, token: str, **changes: Any) -> dict[str, Any]:
    return {
        "redis_url": redis_url,
        "hubspot_base_url": fake.base_url,
        "hubspot_access_token": token,
        "hubspot_token_has_read_scope": True,
        "api_keys": f"svc:{GOOD_KEY}",
        "admin_api_keys": f"ops:{ADMIN_KEY}",
        "key_prefix": "doctor-" + secrets.token_hex(4),
        **changes,
    }


def doctor(overrides: dict[str, Any], environ: dict[str, str] | None = None) -> list[Check]:
    return asyncio.run(run_doctor(overrides, ENVIRON if environ is None else environ, 3.0))


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def report_text(checks: list[Check]) -> str:
    return render(checks).plain + json.dumps([c.as_dict() for c in checks])


def test_good_settings_against_the_fake_are_all_ok_and_exit_0(
    fake: FakeHubSpot, aof_redis_url: str, read_write_token: str
) -> None:
    checks = doctor(good_settings(fake, aof_redis_url, read_write_token))

    assert [c for c in checks if c.status != "ok"] == []
    assert exit_code(checks) == 0
    names = set(by_name(checks))
    assert {"settings", "Redis", "Redis persistence", "Redis eviction", "broker"} <= names
    assert {"HubSpot token (private app)", "HubSpot read scope (private app)"} <= names
    assert {"rate limit", "clock", "Flower login", "HTTP EVENTQ_API_KEYS"} <= names
    assert "eventq will send at most 100/10s" in by_name(checks)["rate limit"].detail
    assert fake.events() == []  # doctor created nothing
    assert {r["method"] for r in fake.requests()} == {"GET"}


def test_a_wrong_token_is_a_fail_line_and_exit_1_without_showing_the_token(
    fake: FakeHubSpot, aof_redis_url: str, read_write_token: str
) -> None:
    wrong = "wrong-" + secrets.token_hex(16)

    checks = doctor(good_settings(fake, aof_redis_url, wrong))

    token_line = by_name(checks)["HubSpot token (private app)"]
    assert token_line.status == "fail"
    assert "refused (HTTP 401" in token_line.detail
    assert "EVENTQ_HUBSPOT_ACCESS_TOKEN" in token_line.fix
    assert exit_code(checks) == 1
    assert wrong not in report_text(checks)


def test_a_write_only_token_is_a_warning_and_still_exits_0(
    fake: FakeHubSpot, aof_redis_url: str
) -> None:
    token = "wo-" + secrets.token_hex(16)
    fake.add_token(token, app="doctor-wo", scopes=[WRITE_SCOPE])
    fake.set_rate_limit(100, 10_000)

    checks = doctor(good_settings(fake, aof_redis_url, token, hubspot_token_has_read_scope=False))

    assert by_name(checks)["HubSpot token (private app)"].status == "ok"
    read = by_name(checks)["HubSpot read scope (private app)"]
    assert read.status == "warn"
    assert "write-only token" in read.detail
    assert exit_code(checks) == 0


def test_a_write_only_token_said_to_have_the_read_scope_is_a_fail(
    fake: FakeHubSpot, aof_redis_url: str
) -> None:
    token = "wo-" + secrets.token_hex(16)
    fake.add_token(token, app="doctor-wo", scopes=[WRITE_SCOPE])

    checks = doctor(good_settings(fake, aof_redis_url, token, hubspot_token_has_read_scope=True))

    read = by_name(checks)["HubSpot read scope (private app)"]
    assert read.status == "fail"
    assert "EVENTQ_HUBSPOT_TOKEN_HAS_READ_SCOPE=true but the token lacks" in read.detail
    assert exit_code(checks) == 1
    assert token not in report_text(checks)


def test_a_token_without_the_write_scope_is_a_fail(fake: FakeHubSpot, aof_redis_url: str) -> None:
    token = "ro-" + secrets.token_hex(16)
    fake.add_token(token, app="doctor-ro", scopes=[READ_SCOPE])

    checks = doctor(good_settings(fake, aof_redis_url, token))

    line = by_name(checks)["HubSpot token (private app)"]
    assert line.status == "fail"
    assert f"without {WRITE_SCOPE}" in line.detail


def test_redis_with_allkeys_lru_is_a_fail_that_names_the_risk(
    fake: FakeHubSpot, aof_redis_url: str, read_write_token: str
) -> None:
    client = redis.Redis.from_url(aof_redis_url)
    client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        checks = doctor(good_settings(fake, aof_redis_url, read_write_token))
    finally:
        client.config_set("maxmemory-policy", "noeviction")

    line = by_name(checks)["Redis eviction"]
    assert line.status == "fail"
    assert "allkeys-lru" in line.detail
    assert "deletes keys" in line.detail
    assert "noeviction" in line.fix
    assert exit_code(checks) == 1


def test_redis_down_is_a_fail_without_showing_its_password(
    fake: FakeHubSpot, read_write_token: str
) -> None:
    password = "pw-" + secrets.token_hex(8)
    down = f"redis://:{password}@127.0.0.1:{free_port()}/0"

    checks = doctor(good_settings(fake, down, read_write_token))

    assert by_name(checks)["Redis"].status == "fail"
    assert "cannot reach Redis" in by_name(checks)["Redis"].detail
    assert by_name(checks)["broker"].status == "fail"
    assert by_name(checks)["HubSpot token (private app)"].status == "ok"  # the rest still ran
    assert exit_code(checks) == 1
    assert password not in report_text(checks)


def test_a_10_character_api_key_is_a_fail_naming_the_setting_and_the_rest_still_runs(
    fake: FakeHubSpot, aof_redis_url: str, read_write_token: str
) -> None:
    short = secrets.token_hex(5)  # 10 characters

    checks = doctor(good_settings(fake, aof_redis_url, read_write_token, api_keys=f"svc:{short}"))

    line = by_name(checks)["setting EVENTQ_API_KEYS"]
    assert line.status == "fail"
    assert "shorter than 16 characters" in line.detail
    assert by_name(checks)["HubSpot token (private app)"].status == "ok"
    assert by_name(checks)["Redis"].status == "ok"
    assert exit_code(checks) == 1
    assert short not in report_text(checks)


def test_a_short_flower_password_is_a_fail(
    fake: FakeHubSpot, aof_redis_url: str, read_write_token: str
) -> None:
    checks = doctor(
        good_settings(fake, aof_redis_url, read_write_token),
        {"FLOWER_BASIC_AUTH": "ops:tooshort1"},
    )

    assert by_name(checks)["Flower login"].status == "fail"
    assert "tooshort1" not in report_text(checks)


def test_oauth_accounts_show_token_hub_id_and_scopes(fake: FakeHubSpot, aof_redis_url: str) -> None:
    refresh = "rt-" + secrets.token_hex(16)
    fake.configure_oauth(refresh_tokens={refresh: 4242})
    fake.set_rate_limit(100, 10_000)

    checks = doctor(oauth_settings(fake, aof_redis_url, refresh, 4242))

    assert by_name(checks)["OAuth token (portal 4242)"].status == "ok"
    scopes = by_name(checks)["OAuth scopes (portal 4242)"]
    assert scopes.status == "ok"
    assert "hub 4242" in scopes.detail
    assert by_name(checks)["rate limit"].status == "ok"
    assert exit_code(checks) == 0
    assert refresh not in report_text(checks)
    assert any(r["path"] == "/oauth/v3/token/introspect" for r in fake.requests())


def test_the_command_exits_1_and_prints_json_without_secrets(
    fake: FakeHubSpot, aof_redis_url: str, tmp_path: Path
) -> None:
    wrong, short = "wrong-" + secrets.token_hex(16), secrets.token_hex(5)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("EVENTQ_", "FLOWER_"))},
        "EVENTQ_REDIS_URL": aof_redis_url,
        "EVENTQ_HUBSPOT_BASE_URL": fake.base_url,
        "EVENTQ_HUBSPOT_ACCESS_TOKEN": wrong,
        "EVENTQ_ADMIN_API_KEYS": f"ops:{short}",
    }

    done = subprocess.run(
        [sys.executable, "-m", "eventq", "doctor", "--json", "--timeout", "3"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )

    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is False
    failed = {c["name"] for c in report["checks"] if c["status"] == "fail"}
    assert {"HubSpot token (private app)", "setting EVENTQ_ADMIN_API_KEYS"} <= failed
    assert wrong not in done.stdout + done.stderr
    assert short not in done.stdout + done.stderr


def test_an_unreachable_amqp_broker_is_a_fail_without_its_password(
    fake: FakeHubSpot, aof_redis_url: str, read_write_token: str
) -> None:
    password = "amqp-" + secrets.token_hex(8)
    broker = f"amqp://eventq:{password}@127.0.0.1:{free_port()}//"

    checks = doctor(good_settings(fake, aof_redis_url, read_write_token, broker_url=broker))

    line = by_name(checks)["broker"]
    assert line.status == "fail"
    assert "cannot reach the broker at amqp://127.0.0.1" in line.detail
    assert by_name(checks)["Redis"].status == "ok"
    assert password not in report_text(checks)


def oauth_settings(fake: FakeHubSpot, redis_url: str, refresh: str, portal: int) -> dict[str, Any]:
    overrides = good_settings(fake, redis_url, "unused", hubspot_access_token=None)
    return overrides | {
        "oauth_client_id": "fake-client-id",
        "oauth_client_secret": "fake-client-secret",
        "oauth_accounts": json.dumps({str(portal): refresh}),
    }


def test_a_revoked_oauth_refresh_token_is_a_fail_without_showing_it(
    fake: FakeHubSpot, aof_redis_url: str
) -> None:
    refresh = "rt-" + secrets.token_hex(16)
    fake.configure_oauth(refresh_tokens={refresh: 5151})
    fake.revoke_refresh_token(refresh)

    checks = doctor(oauth_settings(fake, aof_redis_url, refresh, 5151))

    line = by_name(checks)["OAuth token (portal 5151)"]
    assert line.status == "fail"
    assert exit_code(checks) == 1
    assert refresh not in report_text(checks)


def test_an_oauth_grant_without_the_write_scope_is_a_fail(
    fake: FakeHubSpot, aof_redis_url: str
) -> None:
    refresh = "rt-" + secrets.token_hex(16)
    fake.configure_oauth(refresh_tokens={refresh: 6161}, scopes=["oauth", READ_SCOPE])

    checks = doctor(oauth_settings(fake, aof_redis_url, refresh, 6161))

    line = by_name(checks)["OAuth scopes (portal 6161)"]
    assert line.status == "fail"
    assert f"not {WRITE_SCOPE}" in line.detail
    assert exit_code(checks) == 1
