"""The admin page under `/admin/`: login form, session, static page and its security headers.

The page is static HTML + JS (no build step) calling the JSON API with the session cookie and
a CSRF token; it renders user data with `textContent` only, under a CSP that allows no inline
script, so an event named `<script>…` shows as text.
"""

from __future__ import annotations

import logging
from importlib import resources
from urllib.parse import urlsplit

from aiohttp import web

from producers.http_auth import SESSION, Principal, admin_session
from producers.http_bodies import json_response
from producers.http_errors import ApiError
from producers.http_models import LoginForm, SessionInfo
from producers.http_routes import Reply, Route
from producers.http_sessions import SESSION_COOKIE
from producers.http_state import state_of

__all__ = ["add_security_headers", "admin_page_routes"]

log = logging.getLogger("eventq.http")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
_ERROR_MARK = b"data-login-error hidden"
_HTML = Reply("HTML page", "text/html")


def _asset(name: str) -> bytes:
    return resources.files("producers").joinpath(f"static/{name}").read_bytes()


def _html(body: bytes, status: int = 200) -> web.Response:
    return web.Response(status=status, body=body, content_type="text/html", charset="utf-8")


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Set headers every answer carries; admin pages also get the CSP and no caching."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if request.path.startswith("/admin"):
        response.headers["Content-Security-Policy"] = CSP
        response.headers["Cache-Control"] = "no-store"


async def get_admin_root(request: web.Request) -> web.Response:
    """Send visitors to the admin page."""
    return web.Response(status=308, headers={"Location": "/admin/"})


async def get_admin_page(request: web.Request) -> web.Response:
    """Return the admin page, or send a visitor without a session to the login form."""
    if await admin_session(request, state_of(request)) is None:
        return _see_other("/admin/login")
    return _html(_asset("admin.html"))


async def get_login(request: web.Request) -> web.Response:
    """Return the login form."""
    return _html(_asset("login.html"))


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.host


def _reached_over_https(request: web.Request) -> bool:
    """Return whether the browser reached us over TLS: directly, or through a trusted proxy's
    `X-Forwarded-Proto` (its first value is the proxy nearest the browser)."""
    if request.secure:
        return True
    if not state_of(request).settings.trust_forwarded_proto:
        return False
    forwarded = request.headers.get("X-Forwarded-Proto", "")
    return forwarded.split(",")[0].strip().lower() == "https"


async def post_login(request: web.Request) -> web.Response:
    """Start a session for an admin key (cookie: a random id, never the key)."""
    state = state_of(request)
    if not _same_origin(request):
        raise ApiError(403, "forbidden", "login from another origin refused")
    if request.content_type not in _FORM_TYPES:
        raise ApiError(415, "unsupported_media_type", "expected a form (urlencoded)")
    form = await request.post()
    key = form.get("key")
    found = state.keyring.identify(key) if isinstance(key, str) and 0 < len(key) <= 4096 else None
    if found is None or found[1] != "admin":
        log.info("admin login refused")
        page = _asset("login.html").replace(_ERROR_MARK, b"data-login-error")
        return _html(page, 401)
    cookie, _ = await state.sessions.create(found[0])
    await state.audit.record(Principal(found[0], "admin", "session"), "login", [], "ok")
    response = _see_other("/admin/")
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=state.sessions.ttl_s,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=_reached_over_https(request),
    )
    return response


async def post_logout(request: web.Request) -> web.Response:
    """End the session and forget its cookie."""
    state = state_of(request)
    session = request[SESSION]
    await state.sessions.end(request.cookies.get(SESSION_COOKIE, ""))
    await state.audit.record(Principal(session.keyName, "admin", "session"), "logout", [], "ok")
    response = web.Response(status=204)
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def get_session(request: web.Request) -> web.Response:
    """Return whose session this is and the CSRF token the page sends with changes."""
    session = request[SESSION]
    info = SessionInfo(
        keyName=session.keyName, csrfToken=session.csrfToken, expiresAt=session.expiresAt
    )
    return json_response(info)


def _static(name: str, media_type: str) -> Route:
    async def get_asset(request: web.Request) -> web.Response:
        """Return a static asset of the admin page."""
        return web.Response(body=_asset(name), content_type=media_type, charset="utf-8")

    return Route(
        "GET",
        f"/admin/static/{name}",
        get_asset,
        "public",
        "getAdminAsset_" + name.replace(".", "_"),
        f"The admin page's {name}",
        "admin page",
        {200: Reply(name, media_type)},
    )


def admin_page_routes() -> list[Route]:
    """Return the admin page's routes."""
    redirect = Reply("Redirect", None, headers=("Location",))
    return [
        Route(
            "GET",
            "/admin",
            get_admin_root,
            "public",
            "getAdminRoot",
            "Redirect to /admin/",
            "admin page",
            {308: redirect, 200: _HTML, 303: redirect},
        ),
        Route(
            "GET",
            "/admin/",
            get_admin_page,
            "page",
            "getAdminPage",
            "The admin page (visitors without a session go to the login form)",
            "admin page",
            {200: _HTML, 303: redirect},
        ),
        Route(
            "GET",
            "/admin/login",
            get_login,
            "public",
            "getAdminLogin",
            "The admin login form",
            "admin page",
            {200: _HTML},
        ),
        Route(
            "POST",
            "/admin/login",
            post_login,
            "public",
            "postAdminLogin",
            "Log in with an admin key; sets an HttpOnly, SameSite=Strict session cookie",
            "admin page",
            {303: redirect, 200: _HTML, 401: _HTML},
            body=LoginForm,
            body_media_type="application/x-www-form-urlencoded",
        ),
        Route(
            "POST",
            "/admin/logout",
            post_logout,
            "session",
            "postAdminLogout",
            "Log out (needs the X-CSRF-Token header)",
            "admin page",
            {204: Reply("Logged out")},
        ),
        Route(
            "GET",
            "/admin/session",
            get_session,
            "session",
            "getAdminSession",
            "The admin page's session and CSRF token",
            "admin page",
            {200: SessionInfo},
        ),
        _static("admin.js", "text/javascript"),
        _static("overview.js", "text/javascript"),
        _static("favicon.svg", "image/svg+xml"),
        _static("admin.css", "text/css"),
    ]
