"""One Redis setting for every client: URL forms, TLS, Sentinel, the broker's mapping, redaction.

No network: these check what the factory builds from the settings (tests/integration/
test_redis_production.py runs the same settings against real servers).
"""

from __future__ import annotations

import ssl
import time
from pathlib import Path

import pytest
import redis
from redis.sentinel import SentinelConnectionPool

from eventq.durable_writes import Durability, WriteNotConfirmed
from eventq.messaging import make_celery
from eventq.redis_conn import (
    RedisMoved,
    TimedRetry,
    _retry_count,
    async_client,
    broker,
    describe_target,
    redacted_url,
    sync_client,
)
from eventq.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://eventq:s3cret@cache:6379/0", "redis://eventq:***@cache:6379/0"),
        ("rediss://:s3cret@cache:6380/1", "rediss://:***@cache:6380/1"),
        ("redis://s3cret@cache/0", "redis://***@cache/0"),
        ("amqp://guest:s3cret@rabbit//", "amqp://guest:***@rabbit//"),
        ("redis://cache/0?password=s3cret&db=2", "redis://cache/0?password=***&db=2"),
        (
            "sentinel://u:s3cret@a:26379/0;sentinel://u:s3cret@b:26379/0",
            "sentinel://u:***@a:26379/0;sentinel://u:***@b:26379/0",
        ),
        ("unix:///run/redis.sock?db=0", "unix:///run/redis.sock?db=0"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
    ],
)
def test_redacted_url_hides_every_password_and_keeps_the_rest(url: str, shown: str) -> None:
    assert redacted_url(url) == shown
    assert "s3cret" not in redacted_url(url)


def test_a_sentinel_target_is_described_by_master_and_sentinels_without_the_password() -> None:
    settings = load_settings(
        redis_url="redis://eventq:s3cret@ignored/0",
        redis_sentinels="10.0.0.1:26379, 10.0.0.2:26379",
        redis_sentinel_master="events",
    )
    assert describe_target(settings) == (
        "primary 'events' via sentinels 10.0.0.1:26379,10.0.0.2:26379"
    )


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        (
            {"redis_sentinels": "a:26379,b"},
            "EVENTQ_REDIS_SENTINELS: item 2 ('b') is not `host:port`",
        ),
        ({"redis_sentinels": "a:99999"}, "EVENTQ_REDIS_SENTINELS: item 1"),
        ({"redis_tls_ca_file": "/etc/hosts"}, "is set but EVENTQ_REDIS_URL is not a rediss:// URL"),
        (
            {"redis_url": "rediss://h/0", "redis_tls_ca_file": "/no/such/ca.pem"},
            "EVENTQ_REDIS_TLS_CA_FILE: no such file '/no/such/ca.pem'",
        ),
        (
            {"redis_url": "rediss://h/0", "redis_tls_cert_file": "/etc/hosts"},
            "EVENTQ_REDIS_TLS_CERT_FILE and EVENTQ_REDIS_TLS_KEY_FILE go together",
        ),
        ({"redis_tls_cert_reqs": "sometimes"}, "EVENTQ_REDIS_TLS_CERT_REQS"),
    ],
)
def test_a_malformed_redis_setting_is_named_in_one_line(
    changes: dict[str, str], words: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(**changes)
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_rediss_url_gets_the_tls_files_and_the_certificate_check(tmp_path: Path) -> None:
    ca, cert, key = (tmp_path / name for name in ("ca.pem", "client.pem", "client.key"))
    for path in (ca, cert, key):
        path.write_text("-")
    settings = load_settings(
        redis_url="rediss://eventq:pw@cache:6380/3",
        redis_tls_ca_file=str(ca),
        redis_tls_cert_file=str(cert),
        redis_tls_key_file=str(key),
        redis_tls_cert_reqs="required",
    )
    pool = sync_client(settings).connection_pool
    assert pool.connection_kwargs["ssl_ca_certs"] == str(ca)
    assert pool.connection_kwargs["ssl_certfile"] == str(cert)
    assert pool.connection_kwargs["ssl_keyfile"] == str(key)
    assert pool.connection_kwargs["ssl_cert_reqs"] == "required"
    assert (pool.connection_kwargs["username"], pool.connection_kwargs["password"]) == (
        "eventq",
        "pw",
    )
    # and the broker (Celery, Flower) gets the same files as kombu's broker_use_ssl
    app = make_celery(settings)
    assert app.conf.broker_use_ssl == {
        "ssl_ca_certs": str(ca),
        "ssl_certfile": str(cert),
        "ssl_keyfile": str(key),
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
    }


def test_a_plain_url_gets_no_tls_options_and_the_broker_url_is_the_redis_url() -> None:
    settings = load_settings(redis_url="redis://eventq:pw@cache:6379/0")
    assert "ssl_ca_certs" not in sync_client(settings).connection_pool.connection_kwargs
    assert broker(settings).url == "redis://eventq:pw@cache:6379/0"
    assert broker(settings).use_ssl is None
    assert make_celery(settings).conf.broker_use_ssl is None


def test_a_unix_socket_url_makes_a_unix_connection() -> None:
    settings = load_settings(redis_url="unix:///run/redis/redis.sock?db=2")
    pool = sync_client(settings).connection_pool
    assert pool.connection_kwargs["path"] == "/run/redis/redis.sock"
    assert "Unix" in pool.connection_class.__name__


def test_sentinels_map_to_kombus_sentinel_transport_with_master_and_passwords() -> None:
    settings = load_settings(
        redis_url="redis://eventq:p@ss@ignored:6379/2",
        redis_sentinels="s1:26379,s2:26380",
        redis_sentinel_master="events",
        redis_sentinel_password="sentinel-pw",
    )
    found = broker(settings)
    assert found.url == "sentinel://eventq:p%40ss@s1:26379/2;sentinel://eventq:p%40ss@s2:26380/2"
    assert found.transport_options["master_name"] == "events"
    assert found.transport_options["sentinel_kwargs"]["password"] == "sentinel-pw"
    app = make_celery(settings)
    assert app.conf.broker_transport_options["master_name"] == "events"
    # eventq's own visibility timeout survives the merge
    assert app.conf.broker_transport_options["visibility_timeout"] == settings.visibility_timeout_s


def test_sentinels_give_our_own_clients_a_sentinel_managed_pool() -> None:
    settings = load_settings(
        redis_url="redis://eventq:pw@ignored/4",
        redis_sentinels="s1:26379",
        redis_sentinel_master="events",
    )
    pool = sync_client(settings).connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "events"
    assert (pool.connection_kwargs["password"], pool.connection_kwargs["db"]) == ("pw", 4)
    assert async_client(settings).connection_pool.service_name == "events"  # type: ignore[attr-defined]


def test_an_explicit_broker_url_is_used_as_given_even_with_sentinels() -> None:
    settings = load_settings(redis_sentinels="s1:26379", broker_url="amqp://guest:pw@rabbit//")
    assert broker(settings).url == "amqp://guest:pw@rabbit//"
    assert broker(settings).transport_options == {}


def test_every_client_retries_for_about_the_configured_time() -> None:
    # the backoff is capped at 0.5 s: 20 s is about 40 retries, 2 s about 7
    assert 40 <= _retry_count(load_settings(redis_retry_s=20)) <= 46
    assert 4 <= _retry_count(load_settings(redis_retry_s=2)) <= 8
    retry = sync_client(load_settings(redis_retry_s=2)).get_retry()
    assert retry is not None
    # READONLY arrives as RedisMoved, a ConnectionError: retried on a new connection
    assert redis.ConnectionError in retry._supported_errors


def test_a_moved_redis_and_an_unconfirmed_write_are_redis_connection_errors() -> None:
    # so that a worker requeues, the HTTP service answers 503 and the CLI prints one line
    assert issubclass(RedisMoved, redis.ConnectionError)
    assert issubclass(WriteNotConfirmed, redis.ConnectionError)


def test_durable_writes_are_off_unless_asked_for() -> None:
    assert Durability.from_settings(load_settings()) is None
    on = Durability.from_settings(
        load_settings(redis_durable_writes=True, redis_durable_timeout_ms=250, key_prefix="p")
    )
    assert on == Durability(replicas=1, timeout_ms=250, mark_key="p:durable-mark")


def test_the_retry_gives_up_after_its_time_budget_however_slow_each_try_is() -> None:
    # Given a Redis that hangs: each try waits 0.3 s for a timeout, and 100 retries are allowed
    retry = TimedRetry(budget_s=0.5, retries=100)
    tries: list[float] = []

    def hanging() -> None:
        tries.append(time.monotonic())
        time.sleep(0.3)
        raise redis.TimeoutError("Timeout reading from socket")

    # When a command is retried
    started = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        retry.call_with_retry(hanging, lambda _: None)
    # Then it gave up after about its budget, not after 100 x 0.3 s
    assert len(tries) <= 3
    assert time.monotonic() - started < 1.5


def test_a_readonly_answer_is_retried_and_a_success_ends_the_retries() -> None:
    retry = TimedRetry(budget_s=5, retries=100)
    answers = iter([RedisMoved("READONLY"), RedisMoved("READONLY"), "OK"])

    def command() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert retry.call_with_retry(command, lambda _: None) == "OK"
