"""What `eventq run` sets up around its processes (eventq_cli/sandbox.py): logins generated once,
the sandbox's own prefix, the busy-port line, the banner's commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from eventq.settings import Settings
from eventq_cli.sandbox import (
    Banner,
    Port,
    banner_text,
    busy_port,
    clear_prefix,
    eventq_command,
    load_logins,
    read_env_file,
    sandbox_overrides,
    shown_url,
    write_env_file,
)

NO_LOGINS = Settings(api_keys={}, admin_api_keys={})


def test_a_first_run_generates_a_producer_key_an_admin_key_and_a_flower_login() -> None:
    logins, generated = load_logins({}, NO_LOGINS, None)
    assert [login.setting for login in logins] == [
        "EVENTQ_API_KEYS",
        "EVENTQ_ADMIN_API_KEYS",
        "FLOWER_BASIC_AUTH",
    ]
    assert all(login.generated for login in logins)
    assert [login.name for login in logins] == ["sandbox", "admin", "eventq"]
    assert len({login.secret for login in logins}) == 3
    # the keys pass the settings' own strength check
    settings = Settings(
        api_keys=generated["EVENTQ_API_KEYS"], admin_api_keys=generated["EVENTQ_ADMIN_API_KEYS"]
    )  # type: ignore[arg-type]
    assert settings.api_keys["sandbox"].get_secret_value() == logins[0].secret


def test_a_later_run_reuses_the_saved_logins_and_the_users_own_win_without_losing_them() -> None:
    _, saved = load_logins({}, NO_LOGINS, None)
    again, kept = load_logins(saved, NO_LOGINS, None)
    assert kept == saved
    assert [login.value for login in again] == list(saved.values())
    own = Settings(api_keys="mine:" + "k" * 20, admin_api_keys={})  # type: ignore[arg-type]
    logins, kept = load_logins(saved, own, "ops:secret,other:x")
    assert (logins[0].value, logins[0].generated) == ("mine:" + "k" * 20, False)
    assert logins[1].generated
    assert (logins[2].value, logins[2].generated) == ("ops:secret", False)
    assert kept == saved


def test_the_sandbox_file_is_private_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / ".eventq" / "sandbox.env"
    path.parent.mkdir()
    path.write_text("old")
    path.chmod(0o644)
    write_env_file(path, {"EVENTQ_KEY_PREFIX": "eventq-sandbox", "FLOWER_BASIC_AUTH": "u:p-_x"})
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_env_file(path) == {
        "EVENTQ_KEY_PREFIX": "eventq-sandbox",
        "FLOWER_BASIC_AUTH": "u:p-_x",
    }
    assert read_env_file(tmp_path / "none.env") == {}


def test_the_sandbox_has_its_own_prefix_and_queues_under_it() -> None:
    settings = Settings(key_prefix="prod")
    overrides = sandbox_overrides(settings, "http://127.0.0.1:8090")
    assert overrides["EVENTQ_KEY_PREFIX"] == "prod-sandbox"
    assert overrides["EVENTQ_QUEUE"] == "prod-sandbox:marketing-events"
    assert overrides["EVENTQ_BULK_QUEUE"] == "prod-sandbox:marketing-events-bulk"
    assert overrides["EVENTQ_HUBSPOT_BASE_URL"] == "http://127.0.0.1:8090"


def test_clearing_the_sandbox_deletes_its_keys_and_nothing_else(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    sandbox = f"{key_prefix}-sandbox"
    for name in (f"{sandbox}:job:1", f"{sandbox}:q", f"{key_prefix}:job:1", f"{sandbox}x:job:1"):
        redis_client.set(name, "1")
    try:
        assert clear_prefix(redis_client, sandbox, batch=1) == 2
        assert redis_client.exists(f"{key_prefix}:job:1", f"{sandbox}x:job:1") == 2
        assert redis_client.exists(f"{sandbox}:job:1") == 0
    finally:
        redis_client.delete(f"{sandbox}x:job:1")


PORTS = [
    Port(8090, "127.0.0.1", "fake HubSpot", "--fake-port"),
    Port(5555, "127.0.0.1", "Flower", "--flower-port"),
    Port(8080, "127.0.0.1", "HTTP service", "EVENTQ_HTTP_PORT or --no-http"),
]


def test_a_busy_port_is_one_line_naming_what_moves_it() -> None:
    assert busy_port(PORTS, lambda port, host: True) is None
    line = busy_port(PORTS, lambda port, host: port != 8080)
    assert (
        line == "port 8080 (HTTP service) is in use; change it with EVENTQ_HTTP_PORT or --no-http"
    )
    same = busy_port(
        [PORTS[0], Port(8090, "127.0.0.1", "Flower", "--flower-port")], lambda *_: True
    )
    assert same == "Flower and fake HubSpot both want port 8090; change one: --flower-port"


def test_the_cli_is_named_by_its_path_unless_it_is_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert eventq_command(Path("/")).endswith("/bin/eventq")
    assert "/" in eventq_command(Path("/"))


def banner(**changes: object) -> str:
    logins, _ = load_logins({}, NO_LOGINS, None)
    fields: dict[str, object] = {
        "eventq": ".venv/bin/eventq --env-file .eventq/sandbox.env",
        "env_file": ".eventq/sandbox.env",
        "destination": "the fake HubSpot at http://127.0.0.1:8090",
        "redis": "redis://localhost:6379/0, already running; persists its data (AOF)",
        "data": "key prefix eventq-sandbox, cleared at start",
        "examples": Path("examples"),
        "logins": logins,
        "flower_url": "http://127.0.0.1:5555",
        "http_url": "http://127.0.0.1:8080",
        "fake_url": "http://127.0.0.1:8090",
    }
    fields.update(changes)
    return banner_text(Banner(**fields))  # type: ignore[arg-type]


def test_the_banner_prints_every_login_and_a_command_for_each_step() -> None:
    text = banner()
    assert ".venv/bin/eventq --env-file .eventq/sandbox.env enqueue examples/events.jsonl" in text
    assert "status <job id>" in text
    assert "-d @examples/webinar-6.json" in text
    assert "/_fake/fail-next -H 'Content-Type: application/json' -d '{\"status\": 400}'" in text
    assert "enqueue examples/webinar-7.json" in text
    assert "dlq replay --all" in text
    assert "'http://127.0.0.1:5555/api/workers?refresh=1'" in text
    assert "admin page     http://127.0.0.1:8080/admin/   admin key " in text


def test_without_the_http_service_or_the_fake_the_banner_offers_none_of_their_commands() -> None:
    text = banner(http_url=None, fake_url=None)
    assert "/v1/events" not in text
    assert "admin page" not in text
    assert "fail-next" not in text
    assert "enqueue examples/events.jsonl" in text


def test_the_banner_never_prints_a_users_own_key() -> None:
    own = Settings(api_keys="mine:" + "s" * 20, admin_api_keys="boss:" + "t" * 20)  # type: ignore[arg-type]
    logins, _ = load_logins({}, own, "ops:hunter2")
    text = banner(logins=logins)
    for secret in ("s" * 20, "t" * 20, "hunter2"):
        assert secret not in text
    assert "Bearer <your key>" in text
    assert "'mine' from EVENTQ_API_KEYS (yours)" in text


@pytest.mark.parametrize(
    "value", ["redis://:pa ss@h:6379/0", "redis://:it's@h/0", 'a"b\\c $d #e', "plain-1:x_y"]
)
def test_any_value_written_to_the_sandbox_file_reads_back_unchanged(
    tmp_path: Path, value: str
) -> None:
    path = tmp_path / "sandbox.env"
    write_env_file(path, {"EVENTQ_REDIS_URL": value})
    assert read_env_file(path) == {"EVENTQ_REDIS_URL": value}


def test_env_file_settings_reach_the_command_and_a_missing_file_is_one_line(
    tmp_path: Path,
) -> None:
    # Given a settings file with a bad port (so the command stops before reaching any service)
    env_file = tmp_path / "sandbox.env"
    env_file.write_text("EVENTQ_HTTP_PORT=eighty\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EVENTQ_")}

    def eventq(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "eventq", *args],
            env=clean,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    # When a command reads it, then one that names a file that is not there
    read = eventq("--env-file", str(env_file), "serve")
    missing = eventq("--env-file", "nowhere.env", "serve")
    # Then the file's value was read (and refused in one line), and the missing file named
    assert read.returncode == 2
    assert "invalid setting EVENTQ_HTTP_PORT" in read.stderr
    assert missing.returncode == 2
    assert "nowhere.env" in missing.stderr
    assert "Traceback" not in read.stderr + missing.stderr


def test_the_banner_shows_a_redis_url_without_its_password() -> None:
    assert shown_url("redis://:s3cret@db:6379/0") == "redis://:**@db:6379/0"
    assert shown_url("redis://me:s3cret@db:6379/0") == "redis://me:**@db:6379/0"
    assert shown_url("redis://localhost:6379/0") == "redis://localhost:6379/0"
