"""What `eventq run` sets up around its processes: logins generated once, the sandbox's own key
prefix (cleared at start), the busy-port check and the banner with commands to paste.

The logins and the settings the CLI needs to reach the stack are written to `.eventq/sandbox.env`
(mode 0600, git-ignored); `eventq --env-file .eventq/sandbox.env …` reads them back, so the
banner's commands talk to the stack that printed them.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import redis
from dotenv import dotenv_values
from pydantic import SecretStr

from eventq.settings import Settings

__all__ = [
    "SANDBOX_FILE",
    "SANDBOX_TOKEN",
    "Banner",
    "Login",
    "Port",
    "banner_text",
    "busy_port",
    "clear_prefix",
    "eventq_command",
    "load_logins",
    "read_env_file",
    "redis_persistence",
    "sandbox_overrides",
    "sandbox_prefix",
    "shown_path",
    "shown_url",
    "write_env_file",
]

SANDBOX_FILE = Path(".eventq") / "sandbox.env"
SANDBOX_TOKEN = "sandbox-token"  # noqa: S105 - the fake's token, not a secret
_GENERATED = {
    "EVENTQ_API_KEYS": "sandbox",
    "EVENTQ_ADMIN_API_KEYS": "admin",
    "FLOWER_BASIC_AUTH": "eventq",
}
_HEADER = """\
# Written by `eventq run` (the logins are generated once; delete this file for new ones).
# Keep it private: it holds keys. `eventq --env-file {path} COMMAND` reads it, so the
# command reaches the stack `eventq run` started. EVENTQ_API_KEYS, EVENTQ_ADMIN_API_KEYS and
# FLOWER_BASIC_AUTH set in the environment or ./.env win over the generated ones below.
"""


@dataclass(frozen=True)
class Login:
    """One login the stack uses: `name:secret` from `setting`, generated here or the user's."""

    setting: str
    value: str
    generated: bool

    @property
    def name(self) -> str:
        """Return the part before the first `:` (key name or Flower user)."""
        return self.value.partition(":")[0]

    @property
    def secret(self) -> str:
        """Return the part after the first `:` (the key or the password)."""
        return self.value.partition(":")[2]


@dataclass(frozen=True)
class Port:
    """A port a server of the stack needs, and the setting or flag that moves it."""

    port: int
    host: str
    what: str
    change: str


def sandbox_prefix(settings: Settings) -> str:
    """Return the key prefix of the sandbox's data: the configured one + `-sandbox`.

    Never the configured prefix itself, so clearing the sandbox cannot touch other data.
    """
    return f"{settings.key_prefix}-sandbox"


def sandbox_overrides(settings: Settings, fake_url: str) -> dict[str, str]:
    """Return the settings that put the stack in the sandbox: the fake, its own prefix and queues.

    The Celery queues are named under the prefix too, so another deployment's workers on the
    same Redis never take sandbox jobs, and clearing the prefix empties them.
    """
    prefix = sandbox_prefix(settings)
    return {
        "EVENTQ_HUBSPOT_BASE_URL": fake_url,
        "EVENTQ_HUBSPOT_ACCESS_TOKEN": SANDBOX_TOKEN,
        "EVENTQ_KEY_PREFIX": prefix,
        "EVENTQ_QUEUE": f"{prefix}:{settings.queue}",
        "EVENTQ_BULK_QUEUE": f"{prefix}:{settings.bulk_queue}",
    }


def _generate(setting: str) -> str:
    return f"{_GENERATED[setting]}:{secrets.token_urlsafe(24)}"


def load_logins(
    saved: Mapping[str, str | None], settings: Settings, flower_basic_auth: str | None
) -> tuple[list[Login], dict[str, str]]:
    """Return the producer key, admin key and Flower login the stack uses (in that order), and
    the generated ones to save.

    The user's (settings from the environment or .env; `flower_basic_auth`) win; otherwise the
    ones `saved` in the sandbox file, otherwise new random ones. Generated ones are kept even
    while the user's win, so they stay the same once the user's are gone.
    """
    generated = {setting: saved.get(setting) or _generate(setting) for setting in _GENERATED}
    configured = {
        "EVENTQ_API_KEYS": _first_key(settings.api_keys),
        "EVENTQ_ADMIN_API_KEYS": _first_key(settings.admin_api_keys),
        "FLOWER_BASIC_AUTH": (flower_basic_auth or "").split(",")[0].strip() or None,
    }
    logins = [
        Login(setting, own or generated[setting], generated=own is None)
        for setting, own in configured.items()
    ]
    return logins, generated


def _first_key(keys: Mapping[str, SecretStr]) -> str | None:
    for name, key in keys.items():
        return f"{name}:{key.get_secret_value()}"
    return None


def read_env_file(path: Path) -> dict[str, str | None]:
    """Return the variables of a dotenv file ({} when there is none)."""
    return dict(dotenv_values(path)) if path.is_file() else {}


def write_env_file(path: Path, values: Mapping[str, str]) -> None:
    """Write `values` as a dotenv file readable by its owner only (0600, directory 0700)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    lines = [_HEADER.format(path=path)]
    lines += [f"{name}={_quoted(value)}" for name, value in values.items()]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")
    path.chmod(0o600)  # also when the file existed with looser permissions


def _quoted(value: str) -> str:
    """Return `value` as dotenv reads it back unchanged: bare, in single quotes (taken as they
    are), or in double quotes with `\\` and `"` escaped when it holds a single quote."""
    if re.fullmatch(r"[\w.:/@,+-]*", value):
        return value
    if "'" not in value:
        return f"'{value}'"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def clear_prefix(client: redis.Redis, prefix: str, batch: int = 500) -> int:
    """Delete every key under `prefix:` (SCAN + UNLINK); return how many were deleted."""
    pattern = re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + ":*"
    deleted = 0
    names: list[bytes] = []
    for name in client.scan_iter(match=pattern, count=batch):
        names.append(name)
        if len(names) >= batch:
            deleted += cast(int, client.unlink(*names))
            names.clear()
    if names:
        deleted += cast(int, client.unlink(*names))
    return deleted


def redis_persistence(client: redis.Redis) -> str:
    """Return how a running Redis keeps its data: AOF, RDB snapshots, or not at all."""
    try:
        info = cast(dict[str, Any], client.info("persistence"))
        if int(info.get("aof_enabled", 0)):
            return "persists its data (AOF)"
        save = cast(dict[str, str], client.config_get("save")).get("save", "")
    except redis.ResponseError:  # CONFIG may be disabled on a managed Redis
        return "persistence unknown (CONFIG refused)"
    return f"persists its data (RDB snapshots: save {save})" if save else "does not persist"


def shown_url(url: str) -> str:
    """Return `url` with any password replaced by `**` (as Celery and Flower show it)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:**@{netloc}"))


def busy_port(ports: Sequence[Port], is_free: Callable[[int, str], bool]) -> str | None:
    """Return one line naming the first busy port and what moves it, None when all are free.

    `is_free(port, host)` says whether nothing accepts connections there.
    """
    seen: dict[int, Port] = {}
    for port in ports:
        if port.port in seen:
            return (
                f"{port.what} and {seen[port.port].what} both want port {port.port}; "
                f"change one: {port.change}"
            )
        seen[port.port] = port
        if not is_free(port.port, port.host):
            return f"port {port.port} ({port.what}) is in use; change it with {port.change}"
    return None


def eventq_command(cwd: Path) -> str:
    """Return how a user in `cwd` runs this eventq: `eventq` when it is on PATH (an active
    venv), else the path of the script beside this interpreter (e.g. `.venv/bin/eventq`)."""
    script = Path(sys.executable).parent / "eventq"
    found = shutil.which("eventq")
    if found is not None and Path(found).absolute() == script.absolute():
        return "eventq"
    return shown_path(script, cwd)


def shown_path(path: Path, cwd: Path) -> str:
    """Return `path` relative to `cwd` when it lies below it, else absolute."""
    try:
        return str(path.absolute().relative_to(cwd.absolute()))
    except ValueError:
        return str(path.absolute())


@dataclass(frozen=True)
class Banner:
    """Everything the banner states; each value is true of the running stack."""

    eventq: str  # how to run the CLI, with --env-file
    env_file: str
    destination: str  # where events go
    redis: str  # which Redis and whether it persists
    data: str  # the key prefix and whether it was cleared
    examples: Path  # the examples directory as the user reaches it
    logins: list[Login]
    flower_url: str
    http_url: str | None
    fake_url: str | None


def _login_text(login: Login, what: str) -> str:
    if login.generated:
        return f"{what} {login.secret}"
    return f"{what}: {login.name!r} from {login.setting} (yours)"


def banner_text(b: Banner) -> str:
    """Return the banner: what runs where, the logins, then commands to paste in order."""
    api, admin, flower = b.logins
    flower_login = f"{flower.name} / {flower.secret}" if flower.generated else "yours"
    lines = [
        "eventq is running (Ctrl-C stops everything)",
        f"  events go to   {b.destination}",
        f"  Redis          {b.redis}",
        f"  data           {b.data}",
        f"  logins         {b.env_file} (mode 0600, generated once; delete it for new ones)",
    ]
    if b.http_url is not None:
        lines += [
            f"  HTTP service   {b.http_url}   {_login_text(api, 'producer key')}",
            f"  admin page     {b.http_url}/admin/   {_login_text(admin, 'admin key')}",
        ]
    lines.append(f"  Flower         {b.flower_url}   login {flower_login}")
    lines += ["", "Try it, in another terminal in this directory:", *_commands(b)]
    return "\n".join(lines)


def _commands(b: Banner) -> list[str]:
    api, _, flower = b.logins
    q = b.eventq
    lines = [
        "  # enqueue the examples; then look up one of the job ids it prints",
        f"  {q} enqueue {b.examples / 'events.jsonl'}",
        f"  {q} status <job id>",
    ]
    if b.http_url is not None:
        key = api.secret if api.generated else "<your key>"
        lines += [
            "  # one event through the HTTP service (answers 202 and its job id)",
            f"  curl -sS -XPOST {b.http_url}/v1/events -H 'Authorization: Bearer {key}' "
            f"-H 'Content-Type: application/json' -d @{b.examples / 'webinar-6.json'}",
        ]
    if b.fake_url is not None:
        lines += [
            "  # make a dead letter: the fake refuses the next delivery with a 400",
            f"  curl -sS -XPOST {b.fake_url}/_fake/fail-next "
            "-H 'Content-Type: application/json' -d '{\"status\": 400}'",
            f"  {q} enqueue {b.examples / 'webinar-7.json'}",
            "  # list the dead letters, then replay them: the event is delivered",
            f"  {q} dlq list",
            f"  {q} dlq replay --all",
            f"  # what the fake received: {b.fake_url}/_fake/events",
        ]
    user = f"{flower.name}:{flower.secret}" if flower.generated else "<user>:<password>"
    lines += [
        "  # Flower's API (its UI takes the same login): the workers, asked afresh",
        f"  curl -sS -u {user} '{b.flower_url}/api/workers?refresh=1'",
    ]
    return lines
