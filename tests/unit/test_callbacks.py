"""Callbacks without a worker: the signature (Standard Webhooks' published vector), the
receiver's check, allowed hosts, the backoff, and the dispatcher against the real Redis."""

from __future__ import annotations

import importlib.util
import re
import time
from pathlib import Path
from types import ModuleType

import pytest
import redis
from redis.sentinel import SentinelConnectionPool

from eventq.callbacks import (
    Callback,
    check_signature,
    host_allowed,
    signature_key,
    signed_headers,
)
from eventq.keys import Keys
from eventq.messaging import make_celery
from eventq.outcomes import JobOutcome, queue_outcome
from eventq.schema import check_callback_url
from eventq.settings import load_settings, settings_from_env
from worker.callbacks import Dispatcher, backoff_s, redis_client

ROOT = Path(__file__).resolve().parents[2]
# Standard Webhooks' published test vector (the same in Svix's libraries)
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID, VECTOR_TS, VECTOR_BODY = (
    "msg_p5jXN8AQM9LWM0D4loKWxJek",
    1614265330,
    b'{"test": 2432232314}',
)
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "verify_callback", ROOT / "examples/verify_callback.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_signature_matches_the_standard_webhooks_test_vector() -> None:
    headers = signed_headers(signature_key(VECTOR_SECRET), VECTOR_ID, VECTOR_TS, VECTOR_BODY)
    assert headers["webhook-signature"] == VECTOR_SIGNATURE
    assert check_signature(signature_key(VECTOR_SECRET), headers, VECTOR_BODY, now=VECTOR_TS + 10)


@pytest.mark.parametrize(
    ("secret", "wrong"),
    [
        ("a-plain-text-secret-0123456789", "a-plain-text-secret-0123456780"),
        (VECTOR_SECRET, "whsec_c2VjcmV0LW9mLWFub3RoZXItZW5kcG9pbnQ="),
    ],
)
def test_the_readme_verifier_accepts_a_signed_callback_and_refuses_any_change(
    secret: str, wrong: str
) -> None:
    verify_example = _example().verify
    body = b'{"jobId":"j1","state":"delivered"}'
    now = int(time.time())
    headers = signed_headers(signature_key(secret), "1-0", now, body)
    assert verify_example(secret, headers, body)
    assert not verify_example(secret, headers, body.replace(b"j1", b"j2"))
    assert not verify_example(wrong, headers, body)
    assert not verify_example(secret, {**headers, "webhook-id": "2-0"}, body)
    stale = signed_headers(signature_key(secret), "1-0", now - 301, body)
    assert not verify_example(secret, stale, body)
    assert not check_signature(signature_key(secret), stale, body, now=now)
    assert not check_signature(signature_key(secret), {}, body, now=now)


def test_only_listed_hosts_may_be_called_back() -> None:
    allowed = ["hooks.example.com", "127.0.0.1"]
    assert host_allowed("https://HOOKS.example.com:8443/x?y=1", allowed)
    assert host_allowed("http://127.0.0.1:9/h", allowed)
    assert not host_allowed("https://hooks.example.com.evil.net/", allowed)
    assert not host_allowed("https://evil.net/?hooks.example.com", allowed)
    assert not host_allowed("https://x@evil.net/", allowed)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://hooks.example.com/", "http(s) URL"),
        ("hooks.example.com/x", "http(s) URL"),
        ("https://user:pw@hooks.example.com/", "user or password"),
        ("https://hooks.example.com/" + "x" * 2048, "longer than 2048"),
    ],
)
def test_a_callback_url_that_cannot_be_called_says_why(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        check_callback_url(url)


def test_the_allowed_hosts_setting_is_a_comma_separated_list() -> None:
    settings = settings_from_env(
        {"EVENTQ_CALLBACK_ALLOWED_HOSTS": " Hooks.example.com, 127.0.0.1 ,"}
    )
    assert settings.callback_allowed_hosts == ["hooks.example.com", "127.0.0.1"]


def test_the_callback_backoff_doubles_within_its_jitter_and_stops_at_the_cap() -> None:
    settings = settings_from_env(
        {"EVENTQ_CALLBACK_BACKOFF_BASE_S": "1", "EVENTQ_CALLBACK_BACKOFF_CAP_S": "5"}
    )
    for attempt, base in [(1, 1), (2, 2), (3, 4), (4, 5), (9, 5)]:
        delay = backoff_s(attempt, settings)
        assert base * 0.8 <= delay <= base * 1.2


def _outcome(job_id: str) -> JobOutcome:
    return JobOutcome(jobId=job_id, state="delivered", objectId="9", attempts=1, at=time.time())


def test_the_dispatcher_publishes_one_task_per_outcome_with_a_callback_even_with_two_readers(
    redis_client: redis.Redis, real_redis_url: str, key_prefix: str
) -> None:
    # Given four outcomes, two with an allowed callback URL, one with a host not allowed (a raw
    # message is not checked at enqueue), and two dispatchers
    env = {
        "EVENTQ_REDIS_URL": real_redis_url,
        "EVENTQ_KEY_PREFIX": key_prefix,
        "EVENTQ_CALLBACK_QUEUE": f"{key_prefix}-cbq",
        "EVENTQ_CALLBACK_ALLOWED_HOSTS": "127.0.0.1",
    }
    settings = settings_from_env(env)
    keys = Keys(key_prefix)
    with redis_client.pipeline() as pipe:
        queue_outcome(pipe, keys, _outcome("a"), callback_url="http://127.0.0.1/h", max_len=100)
        queue_outcome(pipe, keys, _outcome("b"), callback_url=None, max_len=100)
        queue_outcome(pipe, keys, _outcome("c"), callback_url="http://127.0.0.1/h", max_len=100)
        queue_outcome(pipe, keys, _outcome("d"), callback_url="http://evil.example/", max_len=100)
        pipe.execute()
    app = make_celery(settings, "test-dispatcher")
    first, second = (Dispatcher(redis_client, app, settings) for _ in range(2))
    try:
        first.ensure_group()
        second.ensure_group()
        # When both read the stream
        published = first.run_once(block_ms=50) + second.run_once(block_ms=50)
        # Then the two allowed callbacks are published once, as tasks on the callback queue
        assert published == 2
        assert redis_client.llen(settings.callback_queue) == 2
        assert second.run_once(block_ms=50) + first.run_once(block_ms=50) == 0
    finally:
        redis_client.delete(settings.callback_queue)
        app.close()


def test_an_unpublished_entry_of_a_dead_dispatcher_is_published_by_another(
    redis_client: redis.Redis, real_redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a dispatcher that read an entry and died before publishing it
    env = {
        "EVENTQ_REDIS_URL": real_redis_url,
        "EVENTQ_KEY_PREFIX": key_prefix,
        "EVENTQ_CALLBACK_ALLOWED_HOSTS": "127.0.0.1",
    }
    settings = settings_from_env({**env, "EVENTQ_CALLBACK_QUEUE": f"{key_prefix}-cbq"})
    keys = Keys(key_prefix)
    with redis_client.pipeline() as pipe:
        queue_outcome(pipe, keys, _outcome("a"), callback_url="http://127.0.0.1/h", max_len=100)
        pipe.execute()
    app = make_celery(settings, "test-dispatcher")
    dead, alive = Dispatcher(redis_client, app, settings), Dispatcher(redis_client, app, settings)
    dead.ensure_group()
    redis_client.xreadgroup("eventq-callbacks", dead._consumer, {keys.outcomes: ">"}, count=10)
    try:
        # When another dispatcher runs after the claim delay (0 here)
        monkeypatch.setattr("worker.callbacks._CLAIM_IDLE_MS", 0)
        published = alive.run_once(block_ms=50)
        # Then it publishes that callback
        assert published == 1
        assert redis_client.llen(settings.callback_queue) == 1
    finally:
        redis_client.delete(settings.callback_queue)
        app.close()


def test_the_outcome_stream_is_trimmed_to_about_its_max_len(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    keys = Keys(key_prefix)
    with redis_client.pipeline() as pipe:
        for n in range(500):
            queue_outcome(pipe, keys, _outcome(str(n)), callback_url=None, max_len=10)
        pipe.execute()
    assert redis_client.xlen(keys.outcomes) < 250  # MAXLEN ~ trims whole nodes (100 entries)


def test_a_callback_body_is_the_outcome_json() -> None:
    outcome = _outcome("a")
    callback = Callback(id="1-0", url="http://127.0.0.1/h", outcome=outcome)
    assert JobOutcome.model_validate_json(callback.body()) == outcome


def test_the_callback_worker_reaches_redis_through_the_factory_sentinel_and_tls_included(
    tmp_path: Path,
) -> None:
    # Given settings that name Sentinels (and, apart, a rediss:// URL with a CA file)
    sentinel = load_settings(
        redis_url="redis://eventq:pw@ignored/4",
        redis_sentinels="s1:26379",
        redis_sentinel_master="events",
    )
    ca = tmp_path / "ca.pem"
    ca.write_text("not read until a connection is made")
    tls = load_settings(redis_url="rediss://cache:6380/0", redis_tls_ca_file=str(ca))
    # When the callback worker asks for its client (the dispatcher's and the DLQ writer's)
    client = redis_client(sentinel)
    # Then it is the factory's: the primary found through the Sentinels, the CA file used
    assert isinstance(client.connection_pool, SentinelConnectionPool)
    assert client.connection_pool.service_name == "events"
    assert redis_client(sentinel) is client  # one client per process
    assert redis_client(tls).connection_pool.connection_kwargs["ssl_ca_certs"] == str(ca)
