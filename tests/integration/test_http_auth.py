"""Who may call what: Bearer keys (401/403), the admin page's session, CSRF, and no key in logs."""

from __future__ import annotations

import logging

import pytest
import redis
import requests

from eventq.settings import Settings
from tests.conftest import Stack, valid_event
from tests.integration.http_support import (
    ADMIN_KEY,
    PRODUCER_KEY,
    Api,
    running_service,
    seed_dead_letter,
)

ADMIN_ROUTES = [
    ("GET", "/v1/dead-letters"),
    ("GET", "/v1/dead-letters/some-id"),
    ("POST", "/v1/dead-letters/replay"),
    ("DELETE", "/v1/dead-letters/some-id"),
    ("GET", "/v1/audit"),
]


def login(base_url: str, key: str = ADMIN_KEY) -> requests.Session:
    """Return a browser-like session logged in through the form; fails the test otherwise."""
    browser = requests.Session()
    answer = browser.post(
        base_url + "/admin/login", data={"key": key}, allow_redirects=False, timeout=10
    )
    assert answer.status_code == 303, answer.text
    return browser


def test_a_request_without_a_key_is_401_and_says_how_to_authenticate(service: str) -> None:
    response = Api(service, key=None).post("/v1/events", json=valid_event())
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="eventq"'


def test_a_service_with_no_keys_configured_says_so_in_its_401(
    service_settings: Settings,
) -> None:
    # Given the service started with neither EVENTQ_API_KEYS nor EVENTQ_ADMIN_API_KEYS
    keyless = service_settings.model_copy(update={"api_keys": {}, "admin_api_keys": {}})
    with running_service(keyless) as base_url:
        # When a producer calls it, with a key or without
        answers = [Api(base_url, key).get("/v1/jobs/abc") for key in (PRODUCER_KEY, None)]
    # Then the 401 says that no keys are configured and which settings to set
    for answer in answers:
        assert answer.status_code == 401
        assert "no API keys configured" in answer.json()["message"]
        assert "EVENTQ_API_KEYS" in answer.json()["message"]


def test_a_wrong_key_or_a_malformed_header_is_401(service: str) -> None:
    wrong = Api(service, key=PRODUCER_KEY + "x").get("/v1/jobs/abc")
    assert wrong.status_code == 401
    assert wrong.json()["message"] == "unknown API key"
    basic = requests.get(
        service + "/v1/jobs/abc", headers={"Authorization": "Basic abc"}, timeout=10
    )
    assert basic.status_code == 401
    empty = requests.get(service + "/v1/jobs/abc", headers={"Authorization": "Bearer "}, timeout=10)
    assert empty.status_code == 401


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_a_producer_key_on_an_admin_route_is_403(service: str, method: str, path: str) -> None:
    response = Api(service, PRODUCER_KEY).session.request(
        method, service + path, json={"ids": ["x"]}, timeout=10
    )
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"


def test_an_admin_key_may_also_use_the_producer_routes(service: str) -> None:
    response = Api(service, ADMIN_KEY).post("/v1/events", json=valid_event())
    assert response.status_code == 202


def test_keys_and_session_cookies_never_reach_the_logs(
    stack: Stack, service: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given every logger capturing at DEBUG
    caplog.set_level(logging.DEBUG)
    # When keys are used rightly and wrongly, on every kind of route, and an admin logs in
    Api(service, PRODUCER_KEY).post("/v1/events", json=valid_event())
    Api(service, PRODUCER_KEY + "-wrong").post("/v1/events", json=valid_event())
    Api(service, PRODUCER_KEY).get("/v1/dead-letters")
    entry = seed_dead_letter(stack.settings, {"eventName": "x"})
    Api(service, ADMIN_KEY).post("/v1/dead-letters/replay", json={"ids": [entry.id]})
    Api(service, ADMIN_KEY).delete(f"/v1/dead-letters/{entry.id}")
    browser = login(service)
    cookie = browser.cookies["eventq_session"]
    browser.get(service + "/admin/session", timeout=10)
    requests.post(service + "/admin/login", data={"key": PRODUCER_KEY}, timeout=10)
    # Then the log names the keys but never shows them (message, arguments or extra fields)
    text = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
    names = {getattr(r, "keyName", None) for r in caplog.records}
    assert {"oncall", "billing"} <= names
    for secret in (PRODUCER_KEY, ADMIN_KEY, cookie):
        assert secret not in text


def test_login_sets_an_httponly_samesite_strict_cookie_holding_a_random_id_not_the_key(
    stack: Stack, service: str, redis_client: redis.Redis
) -> None:
    # When an admin logs in through the form
    answer = requests.post(
        service + "/admin/login", data={"key": ADMIN_KEY}, allow_redirects=False, timeout=10
    )
    # Then they are sent to the page with a session cookie that is not the key
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/admin/"
    header = answer.headers["Set-Cookie"]
    assert "HttpOnly" in header
    assert "SameSite=Strict" in header
    cookie = answer.cookies["eventq_session"]
    assert ADMIN_KEY not in header
    # and Redis holds the session under a hash of the cookie, with a TTL, without the key
    prefix = stack.settings.key_prefix
    (session_key,) = redis_client.scan_iter(f"{prefix}:session:*", count=10_000)
    assert cookie not in session_key.decode()
    assert ADMIN_KEY.encode() not in (redis_client.get(session_key) or b"")
    assert 0 < redis_client.ttl(session_key) <= 8 * 3600


def test_a_producer_key_or_a_wrong_key_cannot_log_in(service: str) -> None:
    for key in (PRODUCER_KEY, "nope"):
        answer = requests.post(
            service + "/admin/login", data={"key": key}, allow_redirects=False, timeout=10
        )
        assert answer.status_code == 401
        assert "That is not an admin key." in answer.text
        assert "eventq_session" not in answer.cookies


def test_a_cross_origin_login_is_refused(service: str) -> None:
    answer = requests.post(
        service + "/admin/login",
        data={"key": ADMIN_KEY},
        headers={"Origin": "https://evil.example"},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 403


def test_a_session_change_without_the_csrf_token_is_403(stack: Stack, service: str) -> None:
    # Given a logged-in admin and a dead-letter entry
    browser = login(service)
    token = browser.get(service + "/admin/session", timeout=10).json()["csrfToken"]
    entry = seed_dead_letter(stack.settings, {"eventName": "x"})
    url = service + f"/v1/dead-letters/{entry.id}"
    # When a change arrives with the cookie but without, or with a wrong, CSRF token
    missing = browser.delete(url, timeout=10)
    wrong = browser.delete(url, headers={"X-CSRF-Token": token + "x"}, timeout=10)
    # Then both are refused and the entry is still there
    assert missing.status_code == wrong.status_code == 403
    assert missing.json()["error"] == "csrf_failed"
    assert browser.get(url, timeout=10).status_code == 200  # reads need no token
    # and with the token the change is made
    done = browser.delete(url, headers={"X-CSRF-Token": token}, timeout=10)
    assert done.status_code == 200


def test_logout_ends_the_session(service: str) -> None:
    browser = login(service)
    token = browser.get(service + "/admin/session", timeout=10).json()["csrfToken"]
    cookie = browser.cookies["eventq_session"]
    assert browser.post(service + "/admin/logout", timeout=10).status_code == 403
    out = browser.post(service + "/admin/logout", headers={"X-CSRF-Token": token}, timeout=10)
    assert out.status_code == 204
    replayed = requests.get(
        service + "/v1/dead-letters", cookies={"eventq_session": cookie}, timeout=10
    )
    assert replayed.status_code == 401


def test_the_admin_page_needs_a_session_and_carries_a_strict_csp(service: str) -> None:
    anonymous = requests.get(service + "/admin/", allow_redirects=False, timeout=10)
    assert anonymous.status_code == 303
    assert anonymous.headers["Location"] == "/admin/login"
    page = login(service).get(service + "/admin/", timeout=10)
    assert page.status_code == 200
    assert 'id="dlq-rows"' in page.text
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "default-src 'none'" in csp
    assert "unsafe-inline" not in csp
    assert page.headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize(("trusted", "secure"), [(False, False), (True, True)])
def test_the_cookie_is_secure_behind_a_tls_proxy_only_when_its_header_is_trusted(
    service_settings: Settings, trusted: bool, secure: bool
) -> None:
    # Given the service behind a proxy that terminates TLS, trusted or not
    settings = service_settings.model_copy(update={"trust_forwarded_proto": trusted})
    with running_service(settings) as base_url:
        # When an admin logs in through it (the proxy says https, and talks http to us)
        answer = requests.post(
            base_url + "/admin/login",
            data={"key": ADMIN_KEY},
            headers={"X-Forwarded-Proto": "https"},
            allow_redirects=False,
            timeout=10,
        )
        plain = requests.post(
            base_url + "/admin/login", data={"key": ADMIN_KEY}, allow_redirects=False, timeout=10
        )
    # Then the cookie is Secure only when the header is trusted, and never without it
    assert answer.status_code == plain.status_code == 303
    assert ("; Secure" in answer.headers["Set-Cookie"]) is secure
    assert "; Secure" not in plain.headers["Set-Cookie"]
