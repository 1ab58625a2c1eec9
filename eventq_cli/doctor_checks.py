"""The checks `eventq doctor` runs before going live, each one a `Check` with what to do.

Settings (each invalid one a ✗, the others still checked), HTTP and Flower keys, Redis and the
broker (reachable, persistence, eviction policy), the HubSpot token or each OAuth account (token
accepted, scopes, hub id), the rate-limit headers of harmless requests and the budget eventq will
use, and the clock against HubSpot's `Date` header.

Nothing here creates anything in HubSpot: the only requests are two GETs of an event that does not
exist (`eventq-doctor-…`) and, in OAuth mode, the token refresh the worker would make anyway and a
token introspection. No check's text contains a secret (`Check`s are also scrubbed by the caller).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import quote, urlparse

import aiohttp
import redis.asyncio
from pydantic import SecretStr, ValidationError

from eventq.accounts import load_accounts
from eventq.settings import ENV_PREFIX, MIN_KEY_LENGTH, RateLimit, Settings, SettingsError
from worker.credentials import READ_SCOPE, WRITE_SCOPE

__all__ = [
    "DOCTOR_ACCOUNT",
    "LISTS_PATH",
    "Check",
    "Probe",
    "Status",
    "check_clock",
    "check_flower",
    "check_http_keys",
    "check_rate_limit",
    "check_redis",
    "planned_budget",
    "probe_hubspot",
    "read_settings",
    "secrets_of",
]

Status = Literal["ok", "warn", "fail"]
EVENTS_PATH = "/marketing/v3/marketing-events/events"
# A GET that HubSpot's spec guards with the write scope: it proves that scope and writes nothing.
LISTS_PATH = "/marketing/v3/marketing-events/associations/{account}/{event}/lists"
DOCTOR_ACCOUNT = "eventq-doctor"  # externalAccountId of the event doctor asks for (never made)
_SKEW_OK_S = 2.0  # Date has whole seconds: up to 1 s is rounding
_SKEW_WARN_S = 30.0
_APP_SCOPES_UI = (
    "in HubSpot: Development > Legacy apps (older accounts: Settings > Integrations > Private "
    "Apps) > your app > Scopes"
)
_RATE_HEADERS = (
    "X-HubSpot-RateLimit-Max",
    "X-HubSpot-RateLimit-Remaining",
    "X-HubSpot-RateLimit-Interval-Milliseconds",
    "X-HubSpot-RateLimit-Daily",
    "X-HubSpot-RateLimit-Daily-Remaining",
)


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, ✓/!/✗, what was found and what to do."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        """Return the check as the JSON object `--json` prints."""
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


@dataclass
class Probe:
    """What the harmless requests learnt: checks, and the headers and timing of one answer."""

    checks: list[Check] = field(default_factory=list)
    headers: Mapping[str, str] | None = None
    accepted: bool = False  # HubSpot accepted the token (its answer's headers are the budget's)
    sent_at: float = 0.0  # epoch seconds halfway through the request that gave `headers`


# --- settings -------------------------------------------------------------------------------


def read_settings(overrides: Mapping[str, Any]) -> tuple[Settings | None, list[Check], set[str]]:
    """Return the settings with every invalid one set back to its default, a ✗ per invalid
    setting, and the names of the invalid fields; settings None when they cannot be repaired.
    """
    repaired: dict[str, Any] = dict(overrides)
    checks: list[Check] = []
    invalid: set[str] = set()
    for _ in range(len(Settings.model_fields) + 1):
        try:
            settings = Settings(**repaired)
        except ValidationError as error:
            fields = _invalid_fields(error, checks)
            if not fields or fields <= invalid:
                return None, checks, invalid
            invalid |= fields
            for name in fields:
                repaired[name] = Settings.model_fields[name].get_default(call_default_factory=True)
            continue
        if not checks:
            checks.append(Check("settings", "ok", f"read ({_mode(settings)})"))
        return settings, checks, invalid
    return None, checks, invalid


def _invalid_fields(error: ValidationError, checks: list[Check]) -> set[str]:
    fields: set[str] = set()
    for item in error.errors():
        name = str(item["loc"][0]) if item["loc"] else ""
        variable = ENV_PREFIX + name.upper() if name else "settings"
        message = item["msg"].removeprefix("Value error, ")  # never the input: it may be a key
        checks.append(
            Check(
                f"setting {variable}",
                "fail",
                message,
                f"fix {variable} as README's settings table describes",
            )
        )
        if name in Settings.model_fields:
            fields.add(name)
    return fields


def _mode(settings: Settings) -> str:
    if settings.oauth_enabled:
        return "OAuth mode"
    if settings.hubspot_access_token is not None:
        return "private-app token"
    return "sandbox mode: no HubSpot credentials"


def secrets_of(settings: Settings | None, environ: Mapping[str, str]) -> list[str]:
    """Return every secret value the report must never show (token, keys, client secrets,
    refresh tokens, Flower passwords, any EVENTQ_* or FLOWER_* value that looks like one)."""
    found: list[SecretStr | str | None] = []
    if settings is not None:
        found += [
            settings.hubspot_access_token,
            settings.oauth_client_secret,
            settings.oauth_client_secret_next,
            settings.oauth_accounts,
            *settings.api_keys.values(),
            *settings.admin_api_keys.values(),
            *_url_passwords(settings.redis_url, settings.broker_url),
            *_refresh_tokens(settings),
        ]
    for name, value in environ.items():
        if name.startswith(("EVENTQ_", "FLOWER_")) and _secret_name(name):
            found.append(value)
            found += [part.partition(":")[2] for part in value.split(",")]
    values = [s.get_secret_value() if isinstance(s, SecretStr) else s for s in found]
    return sorted({v for v in values if v and len(v) >= 4}, key=len, reverse=True)


def _url_passwords(*urls: str | None) -> list[str | None]:
    return [urlparse(url).password for url in urls if url]


def _refresh_tokens(settings: Settings) -> list[SecretStr]:
    if not settings.oauth_enabled:
        return []
    try:
        return list(load_accounts(settings).refresh_tokens.values())
    except SettingsError:
        return []  # doctor reports the accounts' problem on its own line


def _secret_name(name: str) -> bool:
    return any(word in name for word in ("TOKEN", "SECRET", "KEYS", "AUTH", "ACCOUNTS"))


# --- keys -----------------------------------------------------------------------------------


def check_http_keys(settings: Settings, invalid: set[str]) -> list[Check]:
    """Return a line each for the producer and admin keys of the HTTP service."""
    checks = []
    for name, keys in (
        ("api_keys", settings.api_keys),
        ("admin_api_keys", settings.admin_api_keys),
    ):
        variable = ENV_PREFIX + name.upper()
        if name in invalid:
            continue  # already a ✗ from the settings
        if not keys:
            checks.append(
                Check(
                    f"HTTP {variable}",
                    "warn",
                    "no keys: `eventq serve` answers 401 to every call of these routes",
                    f"set {variable}=name:key (keys of at least {MIN_KEY_LENGTH} random "
                    "characters) if you run the HTTP service",
                )
            )
        else:
            names = ", ".join(sorted(keys))
            checks.append(
                Check(
                    f"HTTP {variable}",
                    "ok",
                    f"{len(keys)} key(s) ({names}), each at least {MIN_KEY_LENGTH} characters",
                )
            )
    return checks


def check_flower(environ: Mapping[str, str]) -> Check:
    """Return the line for Flower's login (`FLOWER_BASIC_AUTH=user:password[,user:password]`)."""
    auth = environ.get("FLOWER_BASIC_AUTH", "").strip()
    if not auth:
        return Check(
            "Flower login",
            "warn",
            "FLOWER_BASIC_AUTH is not set: Flower would run without a login (compose refuses to "
            "start it)",
            f"set FLOWER_BASIC_AUTH=user:password (a password of at least {MIN_KEY_LENGTH} "
            "characters) before Flower is reachable by anyone else",
        )
    for index, pair in enumerate(auth.split(","), start=1):
        user, sep, password = pair.strip().partition(":")
        if not sep or not user or not password:
            return Check(
                "Flower login",
                "fail",
                f"FLOWER_BASIC_AUTH item {index} is not user:password",
                "write FLOWER_BASIC_AUTH as user:password[,user2:password2]",
            )
        if len(password) < MIN_KEY_LENGTH:
            return Check(
                "Flower login",
                "fail",
                f"the password of Flower user {user!r} is shorter than {MIN_KEY_LENGTH} "
                "characters: Flower's login is not throttled",
                "use a random one, e.g. python -c 'import secrets; "
                "print(secrets.token_urlsafe(24))'",
            )
    return Check("Flower login", "ok", f"FLOWER_BASIC_AUTH set, passwords ≥ {MIN_KEY_LENGTH}")


# --- Redis ----------------------------------------------------------------------------------


def _where(url: str) -> str:
    """Return host:port/db of a Redis URL, never its password."""
    parsed = urlparse(url)
    return f"{parsed.hostname or 'localhost'}:{parsed.port or 6379}{parsed.path or '/0'}"


async def check_redis(url: str, label: str, variable: str, timeout_s: float) -> list[Check]:
    """Return the lines for one Redis: reachable, persistence, eviction policy."""
    client = redis.asyncio.Redis.from_url(
        url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
    )
    try:
        server = await client.info("server")
        persistence = await client.info("persistence")
        memory = await client.info("memory")
        config = await _config(client, "save", "appendfsync")
    except redis.RedisError as error:
        return [
            Check(
                label,
                "fail",
                f"cannot reach Redis at {_where(url)} ({type(error).__name__})",
                f"start Redis or point {variable} at it; nothing is enqueued or delivered "
                "without it",
            )
        ]
    finally:
        await client.aclose()
    version = server.get("redis_version", "?")
    return [
        Check(label, "ok", f"reachable at {_where(url)} (Redis {version})"),
        _persistence(label, persistence, config),
        _eviction(label, str(memory.get("maxmemory_policy", "unknown"))),
    ]


async def _config(client: redis.asyncio.Redis, *names: str) -> dict[str, str] | None:
    """Return CONFIG GET of `names`, None where CONFIG is refused (managed Redis services)."""
    found: dict[str, str] = {}
    try:
        for name in names:
            for key, value in (await client.config_get(name)).items():
                found[_text(key)] = _text(value)
    except redis.ResponseError:
        return None
    return found


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _persistence(label: str, info: Mapping[str, Any], config: dict[str, str] | None) -> Check:
    name = f"{label} persistence"
    if int(info.get("aof_enabled", 0)):
        fsync = (config or {}).get("appendfsync", "unknown")
        return Check(name, "ok", f"AOF on (appendfsync {fsync})")
    if config is None:
        return Check(
            name,
            "warn",
            "AOF off; the RDB snapshot schedule cannot be read (CONFIG is refused)",
            "make sure the service persists Redis: appendonly yes is what eventq expects",
        )
    if config.get("save", "").strip():
        return Check(
            name,
            "warn",
            f"RDB snapshots only (save {config['save']}): a crash loses the jobs, retries and "
            "dead letters since the last snapshot",
            "turn on AOF: appendonly yes, appendfsync everysec (redis.conf, or CONFIG SET)",
        )
    return Check(
        name,
        "fail",
        "no persistence (AOF off, no RDB snapshots): a restart loses every queued job, "
        "scheduled retry and dead letter",
        "turn on AOF: appendonly yes, appendfsync everysec (redis.conf, or CONFIG SET)",
    )


def _eviction(label: str, policy: str) -> Check:
    name = f"{label} eviction"
    if policy == "noeviction":
        return Check(name, "ok", "maxmemory-policy noeviction: a full Redis refuses writes")
    return Check(
        name,
        "fail",
        f"maxmemory-policy {policy}: a full Redis silently deletes keys: queued jobs, the retry "
        "schedule, dead letters and the delivered ledger (then events are sent twice)",
        "set maxmemory-policy noeviction (redis.conf, or CONFIG SET) and watch memory instead",
    )


async def check_broker(settings: Settings, redis_up: bool, timeout_s: float) -> list[Check]:
    """Return the broker's lines: one when it is the Redis already checked (`redis_up`)."""
    url = settings.effective_broker_url
    if url == settings.redis_url:
        status: Status = "ok" if redis_up else "fail"
        return [Check("broker", status, "the same Redis as EVENTQ_REDIS_URL (above)")]
    if url.startswith(("redis://", "rediss://", "unix://")):
        return await check_redis(url, "broker", "EVENTQ_BROKER_URL", timeout_s)
    return [await asyncio.to_thread(_check_amqp, url, timeout_s)]


def _check_amqp(url: str, timeout_s: float) -> Check:
    from kombu.connection import Connection

    parsed = urlparse(url)
    where = f"{parsed.scheme}://{parsed.hostname}:{parsed.port or ''}"
    try:
        with Connection(url, connect_timeout=timeout_s) as connection:  # type: ignore[no-untyped-call]
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0)
    except Exception as error:  # any transport's failure is the same verdict
        return Check(
            "broker",
            "fail",
            f"cannot reach the broker at {where} ({type(error).__name__})",
            "start the broker or fix EVENTQ_BROKER_URL",
        )
    return Check("broker", "ok", f"reachable at {where} (make its queues durable)")


# --- HubSpot --------------------------------------------------------------------------------


async def probe_hubspot(
    session: aiohttp.ClientSession,
    base_url: str,
    token: str,
    *,
    claims_read: bool,
    who: str,
) -> Probe:
    """Send the two harmless GETs with `token` and return what they prove.

    1. the lists of an event that does not exist: HubSpot's spec requires the write scope for
       this read, so 404 (or 200) proves the token is accepted and may create events;
    2. that event itself (the existence check's GET): 404 proves the read scope.
    `claims_read` is whether eventq was told the token has the read scope.
    """
    event = f"eventq-doctor-{secrets.token_hex(6)}"
    probe = Probe()
    lists = LISTS_PATH.format(account=DOCTOR_ACCOUNT, event=event)
    answer = await _get(session, base_url + lists, token)
    if isinstance(answer, str):
        probe.checks.append(_unreachable(base_url, answer))
        return probe
    status, headers, body, sent_at = answer
    probe.headers, probe.sent_at = headers, sent_at
    verdict = _write_verdict(status, body, who)
    probe.checks.append(verdict)
    if status == 401:
        return probe
    probe.accepted = True
    query = "?externalAccountId=" + quote(DOCTOR_ACCOUNT)
    answer = await _get(session, f"{base_url}{EVENTS_PATH}/{event}{query}", token)
    if isinstance(answer, str):
        probe.checks.append(_unreachable(base_url, answer))
        return probe
    probe.checks.append(_read_verdict(answer[0], answer[2], claims_read, who))
    return probe


async def _get(
    session: aiohttp.ClientSession, url: str, token: str
) -> tuple[int, dict[str, str], dict[str, Any], float] | str:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    started = time.time()
    try:
        async with session.get(url, headers=headers) as response:
            body = await response.json(content_type=None) if response.content_length != 0 else {}
            ended = time.time()
            return response.status, dict(response.headers), _dict(body), (started + ended) / 2
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        return type(error).__name__  # the class only: aiohttp messages may quote headers


def _dict(body: Any) -> dict[str, Any]:
    return body if isinstance(body, dict) else {}


def _unreachable(base_url: str, error: str) -> Check:
    return Check(
        "HubSpot reachable",
        "fail",
        f"no answer from {base_url} ({error})",
        "check EVENTQ_HUBSPOT_BASE_URL, DNS, proxy and firewall (outbound HTTPS to api.hubapi.com)",
    )


def _hubspot_says(body: Mapping[str, Any]) -> str:
    message = str(body.get("message") or "")[:200]
    category = body.get("category")
    return f"HubSpot: {category}: {message}" if category else f"HubSpot: {message or 'no message'}"


def _write_verdict(status: int, body: Mapping[str, Any], who: str) -> Check:
    name = f"HubSpot token ({who})"
    if status in (200, 404):
        return Check(
            name,
            "ok",
            f"accepted, with the write scope {WRITE_SCOPE} (a GET that needs it answered "
            f"{status}; nothing was created)",
        )
    if status == 401:
        return Check(
            name,
            "fail",
            f"refused (HTTP 401, {_hubspot_says(body)})",
            "set EVENTQ_HUBSPOT_ACCESS_TOKEN to the app's current access token (HubSpot shows it "
            "in Development > Legacy apps > your app > Auth)",
        )
    if status == 403:
        return Check(
            name,
            "fail",
            f"accepted but without {WRITE_SCOPE}: every delivery would be dead-lettered as "
            f"auth ({_hubspot_says(body)})",
            f"tick {WRITE_SCOPE} {_APP_SCOPES_UI} (OAuth: add it to the app's scopes and "
            "re-install)",
        )
    if status == 429:
        return Check(
            name,
            "warn",
            "not checked: HubSpot answered 429 (its rate limit is spent right now)",
            "run eventq doctor again in a few seconds",
        )
    return Check(
        name,
        "warn",
        f"not proven: HubSpot answered HTTP {status} ({_hubspot_says(body)}); the first "
        "delivery proves the write scope",
        f"check the app's scopes {_APP_SCOPES_UI}",
    )


def _read_verdict(status: int, body: Mapping[str, Any], claims_read: bool, who: str) -> Check:
    name = f"HubSpot read scope ({who})"
    if status in (200, 404):
        if not claims_read:
            return Check(
                name,
                "warn",
                f"the token has {READ_SCOPE} but eventq is not told so: after an ambiguous "
                "failure it re-sends with PUT instead of checking with a GET first",
                "set EVENTQ_HUBSPOT_TOKEN_HAS_READ_SCOPE=true",
            )
        return Check(name, "ok", f"{READ_SCOPE} granted: ambiguous attempts are checked first")
    if status == 403 and claims_read:
        return Check(
            name,
            "fail",
            f"EVENTQ_HUBSPOT_TOKEN_HAS_READ_SCOPE=true but the token lacks {READ_SCOPE}: every "
            "ambiguous attempt spends a request on a GET HubSpot refuses",
            f"tick {READ_SCOPE} {_APP_SCOPES_UI}, or unset EVENTQ_HUBSPOT_TOKEN_HAS_READ_SCOPE",
        )
    if status == 403:
        return Check(
            name,
            "warn",
            f"write-only token (no {READ_SCOPE}): deliveries work; after an ambiguous failure "
            "eventq re-sends with an idempotent PUT instead of checking with a GET first",
            f"optional: tick {READ_SCOPE} {_APP_SCOPES_UI}, then set "
            "EVENTQ_HUBSPOT_TOKEN_HAS_READ_SCOPE=true",
        )
    return Check(
        name, "warn", f"not proven: HubSpot answered HTTP {status} ({_hubspot_says(body)})"
    )


def oauth_scope_checks(portal: str, scopes: frozenset[str] | None, hub_id: str | None) -> Check:
    """Return the line for one OAuth account's granted scopes and hub id (token answer and
    introspection)."""
    name = f"OAuth scopes (portal {portal})"
    if hub_id is not None and hub_id != portal:
        return Check(
            name,
            "fail",
            f"the refresh token belongs to hub {hub_id}, not portal {portal}",
            "put the refresh token of this portal in the accounts file",
        )
    if scopes is None:
        return Check(name, "warn", "HubSpot did not say which scopes were granted")
    if WRITE_SCOPE not in scopes:
        return Check(
            name,
            "fail",
            f"granted {', '.join(sorted(scopes)) or 'nothing'}, not {WRITE_SCOPE}: every "
            "delivery would be dead-lettered as auth",
            f"add {WRITE_SCOPE} to the app's scopes and have the account re-install it",
        )
    if READ_SCOPE not in scopes:
        return Check(
            name,
            "warn",
            f"no {READ_SCOPE}: after an ambiguous failure eventq re-sends with PUT instead of "
            "checking with a GET first",
            f"optional: add {READ_SCOPE} to the app's (optional) scopes and re-install",
        )
    hub = f"hub {hub_id}, " if hub_id else ""
    return Check(name, "ok", f"{hub}{WRITE_SCOPE} and {READ_SCOPE} granted")


# --- budget and clock -----------------------------------------------------------------------


def _int(headers: Mapping[str, str], name: str) -> int | None:
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        return int(lowered[name.lower()])
    except (KeyError, ValueError):
        return None


def planned_budget(settings: Settings, headers: Mapping[str, str], oauth: bool) -> RateLimit:
    """Return the budget the limiter will enforce: HubSpot's reported one (up to the ceiling)
    when its headers say, else the configured one; less the safety margin."""
    configured = settings.account_rate_limit if oauth else settings.rate_limit
    reported_max = _int(headers, "X-HubSpot-RateLimit-Max")
    window_ms = _int(headers, "X-HubSpot-RateLimit-Interval-Milliseconds")
    limit = configured
    if reported_max and window_ms:
        ceiling = settings.rate_limit_ceiling
        scaled = max(1, int(ceiling.requests * window_ms / (ceiling.window_s * 1000) + 1e-9))
        limit = RateLimit(min(reported_max, scaled), window_ms / 1000)
    requests = max(1, int(limit.requests * (1 - settings.rate_limit_margin) + 1e-9))
    return RateLimit(requests, limit.window_s)


def check_rate_limit(settings: Settings, headers: Mapping[str, str] | None, oauth: bool) -> Check:
    """Return the line for HubSpot's rate-limit headers and the budget eventq will use."""
    variable = "EVENTQ_ACCOUNT_RATE_LIMIT" if oauth else "EVENTQ_RATE_LIMIT"
    seen = {n: v for n, v in (headers or {}).items() if n.lower() in _LOWER_RATE_HEADERS}
    budget = planned_budget(settings, headers or {}, oauth)
    if not seen:
        return Check(
            "rate limit",
            "warn",
            f"HubSpot sent no X-HubSpot-RateLimit-* headers; eventq starts with {variable} "
            f"({budget}) and learns the budget from the first answers that carry them",
            "check that nothing between eventq and HubSpot strips response headers",
        )
    shown = ", ".join(
        f"{name.removeprefix('X-HubSpot-RateLimit-')} {v}" for name, v in seen.items()
    )
    remaining = _int(headers or {}, "X-HubSpot-RateLimit-Daily-Remaining")
    if remaining == 0:
        return Check(
            "rate limit",
            "warn",
            f"HubSpot: {shown}: today's budget is spent; deliveries wait for its reset",
            f"the daily budget resets at midnight in {settings.hubspot_timezone}",
        )
    return Check("rate limit", "ok", f"HubSpot: {shown}; eventq will send at most {budget}")


_LOWER_RATE_HEADERS = frozenset(h.lower() for h in _RATE_HEADERS)


def check_clock(headers: Mapping[str, str] | None, sent_at: float) -> Check:
    """Return the line for this host's clock against HubSpot's `Date` header."""
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    try:
        theirs = parsedate_to_datetime(lowered["date"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return Check("clock", "warn", "HubSpot's answer had no readable Date header")
    skew = sent_at - theirs
    said = f"{abs(skew):.1f} s {'ahead of' if skew > 0 else 'behind'} HubSpot's Date header"
    if abs(skew) <= _SKEW_OK_S:
        return Check("clock", "ok", f"within {_SKEW_OK_S:g} s of HubSpot ({said})")
    fix = "synchronise this host's clock (NTP, chrony or systemd-timesyncd)"
    why = "; Retry-After dates, the daily budget's midnight and job ages are read by this clock"
    status: Status = "warn" if abs(skew) <= _SKEW_WARN_S else "fail"
    return Check("clock", status, said + why, fix)
