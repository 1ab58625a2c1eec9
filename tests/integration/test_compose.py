"""The containerised stack as files: compose.yaml against the Compose Specification's JSON
Schema, the services this project promises, the Dockerfile, .env.example and Prometheus.

No Docker engine runs here; when Debian's `docker-compose` is on PATH its `config` check runs
too.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from deploy.env_example import env_name, render
from eventq.settings import Settings
from tests.conftest import ROOT

COMPOSE = ROOT / "compose.yaml"
SCHEMA = ROOT / "deploy" / "compose-spec.json"
EVENTQ_SERVICES = ("worker", "api", "flower", "fake-hubspot")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def _command(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return command if isinstance(command, str) else " ".join(command)


def _duration_s(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text))


def test_compose_yaml_validates_against_the_compose_specification_schema(
    compose: dict[str, Any],
) -> None:
    schema = yaml.safe_load(SCHEMA.read_text())  # JSON is YAML
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


HA = ("redis-replica", "sentinel-1", "sentinel-2", "sentinel-3")
PROFILE_ARGS = (
    *("--profile", "sandbox", "--profile", "monitoring", "--profile", "ha"),
    *("--profile", "callbacks"),
)


def test_the_stack_has_redis_worker_api_flower_and_the_sandbox_monitoring_and_ha_profiles(
    services: dict[str, dict[str, Any]],
) -> None:
    assert set(services) == {
        *("redis", "worker", "api", "flower", "fake-hubspot", "prometheus", "callbacks", *HA)
    }
    profiles = {name: s.get("profiles", []) for name, s in services.items()}
    assert profiles == {
        "redis": [],
        "worker": [],
        "api": [],
        "flower": [],
        "fake-hubspot": ["sandbox"],
        "prometheus": ["monitoring"],
        **{name: ["ha"] for name in HA},
        "callbacks": ["callbacks"],
    }
    assert "sentinel monitor eventq redis 6379 2" in _command(services["sentinel-1"])
    assert "--replicaof redis 6379" in _command(services["redis-replica"])
    assert "eventq fake-hubspot --host 0.0.0.0 --port 8090 --token sandbox-token" in _command(
        services["fake-hubspot"]
    )


def test_redis_keeps_an_aof_fsynced_every_second_on_a_volume_and_never_evicts(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    redis = services["redis"]
    assert redis["image"].startswith("redis:7")
    command = _command(redis)
    assert "--appendonly yes" in command
    assert "--appendfsync everysec" in command
    assert "--maxmemory-policy noeviction" in command
    assert "redis-data:/data" in redis["volumes"]
    assert "redis-data" in compose["volumes"]
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_every_service_but_prometheus_has_a_healthcheck_and_waits_for_a_healthy_redis(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        if name == "prometheus":
            continue
        assert "test" in service["healthcheck"], name
    for name in ("worker", "api", "flower"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy", name
    assert "/healthz" in str(services["api"]["healthcheck"]["test"])
    assert "inspect ping" in str(services["worker"]["healthcheck"]["test"])


def test_the_worker_scales_with_no_fixed_name_or_port_and_stops_within_one_attempt(
    services: dict[str, dict[str, Any]],
) -> None:
    worker = services["worker"]
    assert _command(worker) == "eventq worker"
    assert "container_name" not in worker
    assert "ports" not in worker
    assert worker["restart"] == "unless-stopped"
    # SIGTERM lets in-flight attempts finish: the grace period must outlast the longest attempt
    # (an existence check and a create, each up to connect + read timeout, two limiter waits)
    defaults = Settings()
    per_request_s = defaults.connect_timeout_s + defaults.read_timeout_s
    longest_attempt_s = 2 * per_request_s + 2 * defaults.max_limiter_wait_s
    assert _duration_s(worker["stop_grace_period"]) > longest_attempt_s


def test_the_api_serves_on_all_interfaces_inside_the_network(
    services: dict[str, dict[str, Any]],
) -> None:
    api = services["api"]
    assert _command(api) == "eventq serve --host 0.0.0.0 --port 8080"
    assert any(str(p).endswith(":8080") for p in api["ports"])


def test_flower_requires_basic_auth_from_the_environment_and_persists_to_a_volume(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    flower = services["flower"]
    command = _command(flower)
    assert "celery -A worker.celery_app flower" in command
    assert '--basic-auth="$$FLOWER_BASIC_AUTH"' in command
    assert 'test -n "$$FLOWER_BASIC_AUTH" ||' in command  # no login, no Flower
    assert "--persistent=True" in command
    assert "--db=/data/flower.db" in command
    assert "flower-data:/data" in flower["volumes"]
    assert "flower-data" in compose["volumes"]
    # Flower 2.x exits on a non-http(s) --broker-api; a Redis broker needs none (it reads the
    # queue lengths from Redis itself), a RabbitMQ one gets its management URL from the env
    assert "--broker-api=redis" not in command
    assert "FLOWER_BROKER_API" in command


def test_env_example_lists_every_setting_with_its_description_and_is_up_to_date() -> None:
    text = (ROOT / ".env.example").read_text()
    for field, info in Settings.model_fields.items():
        assert f"# {env_name(field, info)}=" in text, field
        assert f"# {info.description}" in text, field
    assert text == render(), "run: .venv/bin/python deploy/env_example.py"
    # the compose sandbox block (commented) points the containers at the compose fake
    assert "\n# EVENTQ_HUBSPOT_BASE_URL=http://fake-hubspot:8090\n" in text
    assert "\n# EVENTQ_HUBSPOT_ACCESS_TOKEN=sandbox-token\n" in text
    assert "\nFLOWER_BASIC_AUTH=\n" in text


def test_env_example_copied_as_env_leaves_eventq_run_in_sandbox_mode(tmp_path: Path) -> None:
    # Given .env.example copied to .env as it is
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    # Then its only active line is Flower's (empty) login, and eventq reads it as the sandbox
    text = (tmp_path / ".env").read_text()
    active = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert active == ["FLOWER_BASIC_AUTH="]
    settings = Settings(_env_file=tmp_path / ".env")  # type: ignore[call-arg]
    assert settings.sandbox
    assert settings.hubspot_base_url == "https://api.hubapi.com"


def test_prometheus_scrapes_every_worker_and_the_api_on_their_configured_ports() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    defaults = Settings()
    worker_sd = jobs["eventq-worker"]["dns_sd_configs"][0]
    assert worker_sd["names"] == ["worker"]
    assert worker_sd["port"] == defaults.metrics_port
    assert jobs["eventq-api"]["static_configs"][0]["targets"] == [f"api:{defaults.http_port}"]


def test_the_dockerfile_is_multi_stage_slim_non_root_and_installs_from_the_lock() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.count("\nFROM ") >= 2
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    assert "--constraint requirements.lock" in text
    assert "pip install --no-deps ." in text
    assert re.search(r"^USER eventq", text, re.MULTILINE)
    assert "HEALTHCHECK" in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored
    assert ".venv" in ignored
    assert ".eventq" in ignored  # the sandbox's generated keys


def test_every_data_file_the_packages_read_at_run_time_is_declared_as_package_data() -> None:
    # Given the data files beside the code (Lua scripts, schemas, the admin page's assets)
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared: dict[str, list[str]] = setuptools["package-data"]
    missing = []
    packages = {name: ROOT / name.replace(".", "/") for name in setuptools["packages"]}
    for package, directory in packages.items():
        for path in sorted(directory.rglob("*")):
            relative = path.relative_to(directory).as_posix()
            if path.is_dir() or path.suffix in (".py", ".pyc") or "__pycache__" in relative:
                continue
            # a file of a data directory declared as a package of its own is checked there
            owner = max(
                (d for d in packages.values() if path.is_relative_to(d)), key=lambda d: len(d.parts)
            )
            if owner != directory:
                continue
            # Then each is in package-data, or a non-editable install (the image) lacks it
            if not any(fnmatch.fnmatch(relative, g) for g in declared.get(package, [])):
                missing.append(f"{package}/{relative}")
    assert missing == []


def test_docker_compose_config_accepts_the_file_when_docker_compose_is_installed(
    tmp_path: Path,
) -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (Debian package docker-compose)")
    # Given the files compose reads, with the example .env and a Flower login
    shutil.copy(COMPOSE, tmp_path / "compose.yaml")
    (tmp_path / "deploy").mkdir()
    shutil.copy(ROOT / "deploy" / "prometheus.yml", tmp_path / "deploy" / "prometheus.yml")
    env = (
        (ROOT / ".env.example")
        .read_text()
        .replace("FLOWER_BASIC_AUTH=\n", "FLOWER_BASIC_AUTH=a:b\n")
        .replace("# EVENTQ_HUBSPOT_BASE_URL=http://fake", "EVENTQ_HUBSPOT_BASE_URL=http://fake")
    )
    (tmp_path / ".env").write_text(env)
    # When compose resolves it with every profile
    result = subprocess.run(
        [binary, *PROFILE_ARGS, "config", "--services"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Then it is valid and names every service
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == {
        "redis",
        "worker",
        "api",
        "flower",
        "fake-hubspot",
        "prometheus",
        *HA,
        "callbacks",
    }
