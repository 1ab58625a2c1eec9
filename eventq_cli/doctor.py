"""`eventq doctor`: is this deployment ready to go live? One ✓/!/✗ line per check, and the fix.

The checks are in `doctor_checks`; this module runs them against the configured HubSpot (real or
fake), scrubs every secret from their text, prints them (or `--json`) and exits 1 on any ✗.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import aiohttp
import click
import redis
from rich.text import Text

from eventq.accounts import load_accounts
from eventq.settings import ENV_PREFIX, Settings, SettingsError
from eventq_cli.doctor_checks import (
    Check,
    Probe,
    check_broker,
    check_clock,
    check_flower,
    check_http_keys,
    check_rate_limit,
    check_redis,
    oauth_scope_checks,
    probe_hubspot,
    read_settings,
    secrets_of,
)
from eventq_cli.output import out
from worker.credentials import CredentialsError, CredentialsUnavailable, can_read_events
from worker.hubspot_client import new_session
from worker.token_endpoint import parse_hub_id, parse_scopes

__all__ = ["doctor", "exit_code", "run_doctor"]

_REDIS_FIELDS = frozenset({"redis_url", "broker_url"})
_HUBSPOT_FIELDS = frozenset(
    {
        "hubspot_base_url",
        "hubspot_access_token",
        "oauth_client_id",
        "oauth_client_secret",
        "oauth_client_secret_next",
        "oauth_accounts_file",
        "oauth_accounts",
        "oauth_token_url",
        "default_portal_id",
    }
)
_MARK = {"ok": ("✓", "green"), "warn": ("!", "yellow"), "fail": ("✗", "red")}
_NAME_WIDTH = 34


async def run_doctor(
    overrides: Mapping[str, Any], environ: Mapping[str, str], timeout_s: float = 5.0
) -> list[Check]:
    """Return every check, secrets scrubbed; settings from the environment, `overrides` (by
    field name) winning. Never raises for a failing service: that is a ✗ line."""
    settings, checks, invalid = read_settings(overrides)
    if settings is None:
        return _scrubbed(checks, secrets_of(None, environ))
    checks += check_http_keys(settings, invalid)
    checks.append(check_flower(environ))
    redis_up = False
    if _checkable(invalid, _REDIS_FIELDS, "Redis and broker", checks):
        redis_checks = await check_redis(settings.redis_url, "Redis", "EVENTQ_REDIS_URL", timeout_s)
        redis_up = redis_checks[0].status == "ok"
        checks += redis_checks
        checks += await check_broker(settings, redis_up, timeout_s)
    if _checkable(invalid, _HUBSPOT_FIELDS, "HubSpot", checks):
        session = new_session(
            connect_timeout_s=timeout_s, read_timeout_s=timeout_s, max_connections=4
        )
        async with session:
            checks += await _hubspot_checks(settings, session, redis_up, timeout_s)
    return _scrubbed(checks, secrets_of(settings, environ))


def _checkable(invalid: set[str], fields: frozenset[str], what: str, checks: list[Check]) -> bool:
    """Return True when `what` can be checked; else add a line saying why not (checking it with
    a setting's default instead, e.g. sending the token to api.hubapi.com, would mislead)."""
    bad = sorted(invalid & fields)
    if not bad:
        return True
    names = ", ".join(ENV_PREFIX + name.upper() for name in bad)
    checks.append(Check(what, "warn", f"not checked: {names} is invalid (above)"))
    return False


def exit_code(checks: list[Check]) -> int:
    """Return 1 when any check failed, else 0 (warnings alone pass)."""
    return 1 if any(c.status == "fail" for c in checks) else 0


async def _hubspot_checks(
    settings: Settings, session: aiohttp.ClientSession, redis_up: bool, timeout_s: float
) -> list[Check]:
    if settings.oauth_enabled:
        checks, probe = await _oauth_checks(settings, session, redis_up, timeout_s)
        return checks + _budget_checks(settings, probe, oauth=True)
    if settings.hubspot_access_token is None:
        return [
            Check(
                "HubSpot credentials",
                "warn",
                "none set: sandbox mode (`eventq run` delivers to the fake HubSpot)",
                "set EVENTQ_HUBSPOT_ACCESS_TOKEN (private app) or the EVENTQ_OAUTH_* settings: "
                "see docs/going-live.md",
            )
        ]
    probe = await probe_hubspot(
        session,
        settings.hubspot_base_url,
        settings.hubspot_access_token.get_secret_value(),
        claims_read=settings.hubspot_token_has_read_scope,
        who="private app",
    )
    return probe.checks + _budget_checks(settings, probe, oauth=False)


def _budget_checks(settings: Settings, probe: Probe | None, *, oauth: bool) -> list[Check]:
    if probe is None or probe.headers is None:
        return []
    clock = check_clock(probe.headers, probe.sent_at)
    if not probe.accepted:  # a refusal carries no rate-limit headers: nothing to say of them
        return [clock]
    return [check_rate_limit(settings, probe.headers, oauth), clock]


async def _oauth_checks(
    settings: Settings, session: aiohttp.ClientSession, redis_up: bool, timeout_s: float
) -> tuple[list[Check], Probe | None]:
    """Get each account's token as a worker would (refresh, single-flight, rotation kept in
    Redis), introspect it, and probe HubSpot with the first one that works."""
    from worker.oauth import OAuthCredentials
    from worker.rate_limit import RateLimiter

    try:
        accounts = load_accounts(settings)
    except SettingsError as error:
        return [Check("OAuth accounts", "fail", str(error), error.fix or "")], None
    if not redis_up:
        why = "not checked: getting a token needs Redis (the worker shares tokens there)"
        return [Check("OAuth tokens", "fail", why, "fix Redis first")], None
    conn = redis.asyncio.Redis.from_url(
        settings.redis_url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
    )
    checks: list[Check] = []
    probe: Probe | None = None
    try:
        limiter = RateLimiter.from_settings(conn, settings)
        credentials = OAuthCredentials.from_settings(settings, conn, session, limiter)
        for portal in accounts.portal_ids:
            name = f"OAuth token (portal {portal})"
            try:
                token = await asyncio.wait_for(credentials.token_for(portal), timeout_s * 3)
            except CredentialsUnavailable as error:
                checks.append(Check(name, "fail", str(error), "run eventq doctor again later"))
                continue
            except (CredentialsError, TimeoutError, redis.RedisError) as error:
                detail = str(error) or type(error).__name__
                checks.append(Check(name, "fail", detail, "see docs/oauth.md"))
                continue
            checks.append(Check(name, "ok", "refresh accepted: the account has a valid token"))
            hub_id, scopes = await _introspect(session, settings, token.value.get_secret_value())
            checks.append(oauth_scope_checks(portal, scopes or token.scopes, hub_id))
            if probe is None:
                probe = await probe_hubspot(
                    session,
                    settings.hubspot_base_url,
                    token.value.get_secret_value(),
                    claims_read=can_read_events(token),
                    who=f"portal {portal}",
                )
                checks += [c for c in probe.checks if c.name == "HubSpot reachable"]
    finally:
        await conn.aclose()
    return checks, probe


async def _introspect(
    session: aiohttp.ClientSession, settings: Settings, access_token: str
) -> tuple[str | None, frozenset[str] | None]:
    """Return hub id and scopes from HubSpot's token metadata (`POST /oauth/v3/token/introspect`,
    HubSpot's current one; v1's `GET /oauth/v1/access-tokens/{token}` goes on 2027-02-16);
    (None, None) when it does not answer them."""
    assert settings.oauth_client_id is not None
    assert settings.oauth_client_secret is not None
    form = {
        "client_id": settings.oauth_client_id,
        "client_secret": settings.oauth_client_secret.get_secret_value(),
        "token_type_hint": "access_token",
        "access_token": access_token,
        "token": access_token,
    }
    url = settings.effective_oauth_token_url + "/introspect"
    try:
        async with session.post(url, data=form, headers={"Accept": "application/json"}) as answer:
            body = await answer.json(content_type=None) if answer.status == 200 else {}
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None, None
    if not isinstance(body, dict) or body.get("active") is not True:
        return None, None
    return parse_hub_id(body.get("hub_id")), parse_scopes(body.get("scopes"))


def _scrubbed(checks: list[Check], secrets: list[str]) -> list[Check]:
    """Return the checks with any secret value replaced (a second guard: none should be there)."""

    def scrub(text: str) -> str:
        for secret in secrets:
            text = text.replace(secret, "[secret]")
        return text

    return [
        replace(c, name=scrub(c.name), detail=scrub(c.detail), fix=scrub(c.fix)) for c in checks
    ]


def render(checks: list[Check]) -> Text:
    """Return the report: one line per check, the fix under it, a summary line last."""
    text = Text()
    for check in checks:
        mark, colour = _MARK[check.status]
        text.append(f"{mark} ", style=f"bold {colour}")
        text.append(f"{check.name:<{_NAME_WIDTH}} ", style="bold")
        text.append(check.detail + "\n")
        if check.fix and check.status != "ok":
            text.append(" " * (_NAME_WIDTH + 3) + "→ " + check.fix + "\n", style=colour)
    counts = {s: sum(c.status == s for c in checks) for s in _MARK}
    verdict = "not ready to go live" if counts["fail"] else "ready to go live"
    text.append(
        f"\n{counts['fail']} ✗, {counts['warn']} !, {counts['ok']} ✓: {verdict}",
        style="bold red" if counts["fail"] else "bold green",
    )
    return text


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks as one JSON object.")
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds to wait for each service.",
)
def doctor(as_json: bool, timeout_s: float) -> None:
    """Check this deployment before going live: settings, keys, Redis, broker, HubSpot token
    and scopes, rate limit, clock. Creates nothing in HubSpot, prints no secret; exits 1 on
    any ✗ (a ! is a warning)."""
    # the checks say what the worker's loggers would (an OAuth refusal, say) on their own line
    logging.getLogger("eventq").addHandler(logging.NullHandler())
    checks = asyncio.run(run_doctor({}, os.environ, timeout_s))
    code = exit_code(checks)
    if as_json:
        data = {"ok": code == 0, "checks": [c.as_dict() for c in checks]}
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        out.print(render(checks), soft_wrap=True)
    raise SystemExit(code)
