"""Every Redis client eventq makes, from one set of settings: URL, TLS, ACL user, Sentinel.

`sync_client` and `async_client` are the only places a redis-py client is built; `broker` maps
the same settings onto kombu's broker URL, transport options and `broker_use_ssl` (Celery,
Flower). `redacted_url` is the form of a URL that output may show.

A failover is survived by retrying, not by restarting: every client retries a command for
EVENTQ_REDIS_RETRY_S (`TimedRetry`) while Redis is unreachable or answers `READONLY` (the
address now points at a replica), reconnecting each time; through Sentinel it asks the
sentinels for the primary again on each reconnect.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast
from urllib.parse import quote, unquote, urlsplit

import redis
import redis.asyncio as aioredis
import redis.asyncio.connection as aioconnection
import redis.connection
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, ReadOnlyError, TimeoutError
from redis.retry import Retry
from redis.sentinel import Sentinel

from eventq.errors import EventqError
from eventq.settings import Settings

__all__ = [
    "REDIS_SCHEMES",
    "BrokerConnection",
    "MovedAwareConnection",
    "MovedAwareSSLConnection",
    "RedisMoved",
    "RedisUnavailable",
    "TimedRetry",
    "async_client",
    "broker",
    "check_redis",
    "describe_target",
    "is_redis_url",
    "redacted_url",
    "sync_client",
]

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
# errors after which a command is sent again on a fresh connection: Redis is gone or moved
RETRY_ON = (ConnectionError, TimeoutError, ReadOnlyError)
_BACKOFF_BASE_S = 0.05
_BACKOFF_CAP_S = 0.5
_SOCKET_TIMEOUT_S = 10.0
_CONNECT_TIMEOUT_S = 5.0
_HIDDEN = "***"

AsyncClient = TypeVar("AsyncClient", bound=aioredis.Redis)


class RedisMoved(EventqError, ConnectionError):
    """Redis answered READONLY: the address now reaches a replica (a failover is under way).

    A `redis.ConnectionError` too, so the client retries it on a new connection and, once
    EVENTQ_REDIS_RETRY_S is spent, everything that handles "Redis unavailable" handles it:
    a worker requeues the message, the HTTP service answers 503, the CLI prints one line.
    """


class RedisUnavailable(EventqError):
    """Redis did not answer or refused us at start-up; the message names where (password
    hidden), why, and the settings to check."""


class _MovedAware:
    """A connection that turns READONLY into `RedisMoved` and drops itself, as redis-py's
    Sentinel-managed connection does, so that the retry reconnects (and re-resolves a DNS
    name that a managed Redis points at the new primary)."""

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)  # type: ignore[misc]
        except ReadOnlyError as error:
            self.disconnect()  # type: ignore[attr-defined]
            raise RedisMoved(f"READONLY (Redis moved: a failover?): {error}") from None


class _AsyncMovedAware:
    """The asyncio form of `_MovedAware`."""

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)  # type: ignore[misc]
        except ReadOnlyError as error:
            await self.disconnect()  # type: ignore[attr-defined]
            raise RedisMoved(f"READONLY (Redis moved: a failover?): {error}") from None


class MovedAwareConnection(_MovedAware, redis.connection.Connection):
    """A TCP connection that answers READONLY with `RedisMoved` (also kombu's, see
    eventq.redis_transport)."""


class MovedAwareSSLConnection(_MovedAware, redis.connection.SSLConnection):
    """A TLS connection that answers READONLY with `RedisMoved`."""


class _UnixConnection(_MovedAware, redis.connection.UnixDomainSocketConnection):
    pass


class _AsyncConnection(_AsyncMovedAware, aioconnection.Connection):
    pass


class _AsyncSSLConnection(_AsyncMovedAware, aioconnection.SSLConnection):
    pass


class _AsyncUnixConnection(_AsyncMovedAware, aioconnection.UnixDomainSocketConnection):
    pass


def _connection_class(url: str, *, asynchronous: bool) -> type[Any]:
    scheme = urlsplit(url).scheme
    if asynchronous:
        found = {"rediss": _AsyncSSLConnection, "unix": _AsyncUnixConnection}
        return found.get(scheme, _AsyncConnection)
    found_sync = {"rediss": MovedAwareSSLConnection, "unix": _UnixConnection}
    return found_sync.get(scheme, MovedAwareConnection)


def is_redis_url(url: str) -> bool:
    """Return True for a URL redis-py connects to (redis://, rediss://, unix://)."""
    return url.startswith(REDIS_SCHEMES)


def redacted_url(url: str) -> str:
    """Return `url` with any password replaced by `***` (each part of a `;`-joined list too).

    The user name stays (it helps to tell which ACL user is refused); a `password=` query
    parameter is hidden as well.
    """
    return ";".join(_redact_one(part) for part in url.split(";"))


def _redact_one(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return _HIDDEN  # unparseable: show nothing rather than a secret
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}:{_HIDDEN}@{hostport}" if sep else f"{user}@{hostport}"
        if not sep and user and not _looks_like_user(parts.scheme):
            netloc = f"{_HIDDEN}@{hostport}"  # redis://secret@host: redis-py reads a password
    query = "&".join(
        f"{name}={_HIDDEN}" if name.lower() == "password" else f"{name}{eq}{value}"
        for name, eq, value in (item.partition("=") for item in parts.query.split("&") if item)
    )
    shown = f"{parts.scheme}://{netloc}{parts.path}"
    return shown + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")


def _looks_like_user(scheme: str) -> bool:
    # redis-py reads `redis://word@host` as a password with no user; amqp reads it as a user
    return scheme not in ("redis", "rediss", "unix", "sentinel")


def _retry_count(settings: Settings) -> int:
    """Return how many retries span EVENTQ_REDIS_RETRY_S with the capped backoff."""
    ramp_s = sum(min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2**i) for i in range(4))
    capped: int = math.ceil((settings.redis_retry_s - ramp_s) / _BACKOFF_CAP_S)
    return 4 + max(0, capped)


T = TypeVar("T")


class TimedRetry(Retry):
    """redis-py's `Retry`, bounded by time as well as by count: it gives up once `budget_s`
    has passed since the call began, so a Redis that hangs (each try waits for its socket
    timeout) cannot stretch the retries to count x timeout."""

    def __init__(self, budget_s: float, retries: int) -> None:
        super().__init__(ExponentialBackoff(_BACKOFF_CAP_S, _BACKOFF_BASE_S), retries)
        self.budget_s = budget_s

    def call_with_retry(self, do: Callable[[], T], fail: Callable[[Exception], Any]) -> T:
        """Return `do()`, retried after each supported error until the budget is spent."""
        self._backoff.reset()  # type: ignore[no-untyped-call]
        deadline = time.monotonic() + self.budget_s
        failures = 0
        while True:
            try:
                return do()
            except self._supported_errors as error:
                failures += 1
                fail(error)
                pause_s = self._backoff.compute(failures)
                if failures > self._retries or time.monotonic() + pause_s > deadline:
                    raise error
                time.sleep(pause_s)


class AsyncTimedRetry(AsyncRetry):
    """`TimedRetry` for the asyncio clients."""

    def __init__(self, budget_s: float, retries: int) -> None:
        super().__init__(ExponentialBackoff(_BACKOFF_CAP_S, _BACKOFF_BASE_S), retries)
        self.budget_s = budget_s

    async def call_with_retry(
        self, do: Callable[[], Awaitable[T]], fail: Callable[[Any], Any]
    ) -> T:
        """Return `await do()`, retried after each supported error until the budget is spent."""
        self._backoff.reset()  # type: ignore[no-untyped-call]
        deadline = time.monotonic() + self.budget_s
        failures = 0
        while True:
            try:
                return await do()
            except self._supported_errors as error:
                failures += 1
                await fail(error)
                pause_s = self._backoff.compute(failures)
                if failures > self._retries or time.monotonic() + pause_s > deadline:
                    raise error
                await asyncio.sleep(pause_s)


def _common_kwargs(settings: Settings) -> dict[str, Any]:
    return {
        "socket_timeout": _SOCKET_TIMEOUT_S,
        "socket_connect_timeout": _CONNECT_TIMEOUT_S,
        "socket_keepalive": True,
        "health_check_interval": 30,
        "retry_on_error": list(RETRY_ON),
    }


def _tls_kwargs(settings: Settings, url: str) -> dict[str, Any]:
    if not url.startswith("rediss://"):
        return {}
    found: dict[str, Any] = {"ssl_cert_reqs": settings.redis_tls_cert_reqs}
    if settings.redis_tls_ca_file is not None:
        found["ssl_ca_certs"] = str(settings.redis_tls_ca_file)
    if settings.redis_tls_cert_file is not None:
        found["ssl_certfile"] = str(settings.redis_tls_cert_file)
    if settings.redis_tls_key_file is not None:
        found["ssl_keyfile"] = str(settings.redis_tls_key_file)
    return found


@dataclass(frozen=True)
class _Credentials:
    """What a Sentinel-managed connection takes from EVENTQ_REDIS_URL: user, password, db."""

    username: str | None
    password: str | None
    db: int
    tls: bool

    @classmethod
    def of(cls, url: str) -> _Credentials:
        parts = urlsplit(url)
        path = parts.path.strip("/")
        return cls(
            unquote(parts.username) if parts.username else None,
            unquote(parts.password) if parts.password else None,
            int(path) if path.isdigit() else 0,
            parts.scheme == "rediss",
        )

    def kwargs(self) -> dict[str, Any]:
        return {"username": self.username, "password": self.password, "db": self.db}


def _sentinel_kwargs(settings: Settings, url: str) -> dict[str, Any]:
    """Return the keyword arguments of the connections to the sentinels themselves."""
    found: dict[str, Any] = {"socket_connect_timeout": _CONNECT_TIMEOUT_S}
    if settings.redis_sentinel_password is not None:
        found["password"] = settings.redis_sentinel_password.get_secret_value()
    tls = _tls_kwargs(settings, url)
    if tls:
        found.update(tls, ssl=True)
    return found


def _uses_sentinel(settings: Settings, url: str | None) -> bool:
    return bool(settings.redis_sentinels) and url in (None, settings.redis_url)


def _sentinel_options(settings: Settings, target: str) -> dict[str, Any]:
    """Return the keyword arguments of `Sentinel` / `AsyncSentinel` for `target`: the sentinels'
    own options, and the primary's credentials and TLS."""
    creds = _Credentials.of(target)
    tls = {**_tls_kwargs(settings, target), "ssl": True} if creds.tls else {}
    return {"sentinel_kwargs": _sentinel_kwargs(settings, target), **creds.kwargs(), **tls}


def sync_client(settings: Settings, url: str | None = None, **extra: Any) -> redis.Redis:
    """Return a blocking client of EVENTQ_REDIS_URL (or `url`), through Sentinel when set.

    `extra` keyword arguments (e.g. `max_connections`) go to the connection pool.
    """
    target = url or settings.redis_url
    options = {
        **_common_kwargs(settings),
        "retry": TimedRetry(settings.redis_retry_s, _retry_count(settings)),
        **extra,
    }
    if _uses_sentinel(settings, url):
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            settings.redis_sentinels, **_sentinel_options(settings, target)
        )
        master = sentinel.master_for(settings.redis_sentinel_master, **options)  # type: ignore[no-untyped-call]
        return cast(redis.Redis, master)
    made = _connection_class(target, asynchronous=False)
    return redis.Redis.from_url(
        target, connection_class=made, **_tls_kwargs(settings, target), **options
    )


def async_client(
    settings: Settings,
    url: str | None = None,
    *,
    client_class: type[AsyncClient] = aioredis.Redis,  # type: ignore[assignment]
    **extra: Any,
) -> AsyncClient:
    """Return an asyncio client (of `client_class`) of EVENTQ_REDIS_URL (or `url`), through
    Sentinel when set. `extra` keyword arguments go to the connection pool."""
    target = url or settings.redis_url
    options = {
        **_common_kwargs(settings),
        "retry": AsyncTimedRetry(settings.redis_retry_s, _retry_count(settings)),
        **extra,
    }
    if _uses_sentinel(settings, url):
        sentinel = AsyncSentinel(  # type: ignore[no-untyped-call]
            settings.redis_sentinels, **_sentinel_options(settings, target)
        )
        master = sentinel.master_for(
            settings.redis_sentinel_master, redis_class=client_class, **options
        )
        return cast(AsyncClient, master)
    connection = _connection_class(target, asynchronous=True)
    made = client_class.from_url(
        target, connection_class=connection, **_tls_kwargs(settings, target), **options
    )
    return cast(AsyncClient, made)


def check_redis(settings: Settings) -> None:
    """PING Redis once, without retrying; raise RedisUnavailable saying where and why.

    For start-up: a wrong password or an unreachable host is one clear line, not a traceback.
    """
    client = sync_client(settings, retry=Retry(ExponentialBackoff(), 0))
    try:
        client.ping()
    except redis.RedisError as error:
        raise RedisUnavailable(
            f"cannot use Redis at {describe_target(settings)}: {error} "
            f"(check {', '.join(_redis_settings(settings))})"
        ) from None
    finally:
        client.close()


def describe_target(settings: Settings) -> str:
    """Return where eventq's Redis is, for output: the URL without its password, or the
    Sentinel primary's name and the sentinels."""
    if settings.redis_sentinels:
        sentinels = ",".join(f"{host}:{port}" for host, port in settings.redis_sentinels)
        return f"primary {settings.redis_sentinel_master!r} via sentinels {sentinels}"
    return redacted_url(settings.redis_url)


def _redis_settings(settings: Settings) -> list[str]:
    names = ["EVENTQ_REDIS_URL"]
    if settings.redis_sentinels:
        names += ["EVENTQ_REDIS_SENTINELS", "EVENTQ_REDIS_SENTINEL_MASTER"]
    if settings.redis_url.startswith("rediss://"):
        names += ["EVENTQ_REDIS_TLS_CA_FILE"]
    return names


@dataclass(frozen=True)
class BrokerConnection:
    """The Celery broker as kombu takes it: URL, extra transport options, `broker_use_ssl`."""

    url: str
    transport_options: dict[str, Any] = field(default_factory=dict)
    use_ssl: dict[str, Any] | None = None


def broker(settings: Settings) -> BrokerConnection:
    """Return the broker connection of the settings: EVENTQ_BROKER_URL as given (RabbitMQ, or
    a Redis of its own), else EVENTQ_REDIS_URL with its TLS files, or kombu's `sentinel://`
    transport over EVENTQ_REDIS_SENTINELS."""
    url = settings.effective_broker_url
    if not url.startswith(("redis://", "rediss://")):
        return BrokerConnection(url)  # RabbitMQ, or a URL form kombu reads itself
    tls = _kombu_ssl(settings, url)
    if not _uses_sentinel(settings, settings.broker_url):
        return BrokerConnection(url, use_ssl=tls)
    creds = _Credentials.of(url)
    userinfo = ""
    if creds.username or creds.password:
        userinfo = f"{quote(creds.username or '', safe='')}:{quote(creds.password or '', safe='')}@"
    hosts = [
        f"sentinel://{userinfo}{host}:{port}/{creds.db}" for host, port in settings.redis_sentinels
    ]
    options = {
        "master_name": settings.redis_sentinel_master,
        "sentinel_kwargs": _sentinel_kwargs(settings, url),
    }
    return BrokerConnection(";".join(hosts), options, tls)


def _kombu_ssl(settings: Settings, url: str) -> dict[str, Any] | None:
    """Return `broker_use_ssl` for a rediss:// broker (kombu's names are redis-py's)."""
    tls = _tls_kwargs(settings, url)
    if not tls:
        return None
    levels = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
    return {**tls, "ssl_cert_reqs": levels[settings.redis_tls_cert_reqs]}
