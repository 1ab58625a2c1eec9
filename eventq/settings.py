"""Settings for every eventq process, read from `EVENTQ_*` environment variables and `.env`."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from eventq.errors import InvalidInput

__all__ = [
    "ENV_PREFIX",
    "RateLimit",
    "Settings",
    "SettingsError",
    "get_settings",
    "load_settings",
    "settings_from_env",
]

ENV_PREFIX = "EVENTQ_"
MIN_KEY_LENGTH = 16
_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*(ms|s|m)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}
_SETTING_NAMED = re.compile(r"^invalid setting (EVENTQ_\w+)")


class SettingsError(InvalidInput, RuntimeError):
    """A setting is missing or malformed; the message names the variable and the problem.

    `field` is the variable (from the message's `invalid setting NAME:` when not given).
    """

    def __init__(self, message: str, *, field: str | None = None, fix: str | None = None) -> None:
        named = _SETTING_NAMED.match(message)
        field = field or (named.group(1) if named else None)
        fix = fix or (f"set {field} as docs/settings.md describes" if field else None)
        super().__init__(message, field=field, fix=fix)


class RateLimit:
    """A request budget such as `190/10s`: `requests` per `window_s` seconds."""

    def __init__(self, requests: int, window_s: float) -> None:
        if requests <= 0 or window_s <= 0:
            raise ValueError("rate limit needs a positive count and a positive window")
        self.requests = requests
        self.window_s = window_s

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """Return the budget written as `N/10s`, `N/500ms`, `N/1m` or `N/s`; raise ValueError."""
        match = _RATE_RE.match(text)
        if not match:
            raise ValueError(f"expected a rate such as '190/10s', got {text!r}")
        count, amount, unit = match.groups()
        return cls(int(count), float(amount or 1) * _UNIT_S[unit])

    def __str__(self) -> str:
        window = f"{self.window_s:g}s"
        return f"{self.requests}/{window}"

    def __repr__(self) -> str:
        return f"RateLimit({self!s})"


class Settings(BaseSettings):
    """Every setting of eventq. Each field's description is docs/settings.md's table."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    redis_url: str = Field(
        "redis://localhost:6379/0",
        description="Redis holding the retry schedule, DLQ, ledger, limiter and job status.",
    )
    broker_url: str | None = Field(
        None,
        description="Celery broker URL; defaults to EVENTQ_REDIS_URL. May be amqp://… (RabbitMQ).",
    )
    redis_sentinels: Annotated[list[tuple[str, int]], NoDecode] = Field(
        default_factory=list,
        description="Redis Sentinel addresses, `host:port,host:port`. When set, every client "
        "(and the Celery broker, unless EVENTQ_BROKER_URL is set) asks them for the primary of "
        "EVENTQ_REDIS_SENTINEL_MASTER; EVENTQ_REDIS_URL then gives only the scheme (`rediss` for "
        "TLS), user, password and database number.",
    )
    redis_sentinel_master: str = Field(
        "mymaster", description="Name of the Sentinel-monitored primary (`sentinel monitor NAME`)."
    )
    redis_sentinel_password: SecretStr | None = Field(
        None, description="Password of the sentinels themselves (their `requirepass`), if any."
    )
    redis_tls_ca_file: Path | None = Field(
        None,
        description="CA bundle that signed the Redis server's certificate (`rediss://`); "
        "default: the system's CAs.",
    )
    redis_tls_cert_file: Path | None = Field(
        None, description="Client certificate for Redis TLS (servers with `tls-auth-clients`)."
    )
    redis_tls_key_file: Path | None = Field(
        None, description="Private key of EVENTQ_REDIS_TLS_CERT_FILE."
    )
    redis_tls_cert_reqs: Literal["required", "optional", "none"] = Field(
        "required",
        description="Check of the Redis server's certificate: `required` (and its host name), "
        "`optional`, or `none` (encryption without authentication: trials only).",
    )
    redis_retry_s: PositiveFloat = Field(
        20.0,
        description="How long a Redis command keeps retrying while Redis is unreachable or "
        "answers READONLY (a failover in progress) before it fails; cover Sentinel's "
        "down-after-milliseconds plus the failover.",
    )
    redis_durable_writes: bool = Field(
        False,
        description="Confirm that a replica holds each accepted job, recorded outcome and DLQ "
        "entry (`WAIT`) before going on; a producer whose write is not confirmed gets a "
        "retryable error (docs/operating.md).",
    )
    redis_durable_replicas: PositiveInt = Field(
        1, description="Replicas that must hold a durable write (`WAIT numreplicas`)."
    )
    redis_durable_timeout_ms: PositiveInt = Field(
        1000, description="Longest a durable write waits for its replicas (`WAIT ... timeout`)."
    )
    hubspot_base_url: str = Field(
        "https://api.hubapi.com", description="Base URL of the HubSpot API (or of the fake)."
    )
    hubspot_access_token: SecretStr | None = Field(
        None, description="Private-app access token. Unset means sandbox mode under `eventq run`."
    )
    hubspot_token_has_read_scope: bool = Field(
        False,
        description=(
            "Set when the private-app token also has crm.objects.marketing_events.read: an "
            "ambiguous attempt is then checked with a GET before re-sending. Without it (or "
            "when the GET is refused) eventq re-sends idempotently with PUT."
        ),
    )
    api_keys: Annotated[dict[str, SecretStr], NoDecode] = Field(
        default_factory=dict,
        description=(
            "Producer keys for the HTTP ingest, `name:key,name2:key2` (or a JSON object), one name "
            "per key; "
            f"each key at least {MIN_KEY_LENGTH} characters."
        ),
    )
    admin_api_keys: Annotated[dict[str, SecretStr], NoDecode] = Field(
        default_factory=dict,
        description="Admin keys for DLQ routes and /admin/, same format as EVENTQ_API_KEYS.",
    )
    rate_limit: Annotated[RateLimit, NoDecode] = Field(
        default_factory=lambda: RateLimit(100, 10.0),
        description="Request budget of a private app (its token), e.g. `190/10s`.",
    )
    rate_limit_margin: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="Fraction of the budget kept unused as a safety margin (0.05 = use 95%).",
    )
    rate_limit_pad_ms: int = Field(
        250,
        ge=0,
        description="Added to the limiter's window to absorb network jitter between hosts.",
    )
    rate_limit_ceiling: Annotated[RateLimit, NoDecode] = Field(
        default_factory=lambda: RateLimit(250, 10.0),
        description="Most a bucket's budget may rise to when HubSpot's "
        "X-HubSpot-RateLimit-Max reports more than configured (HubSpot's top tier: 250/10s).",
    )
    rate_limit_share: bool = Field(
        True,
        description="Leave what other clients of the same app spend (seen in "
        "X-HubSpot-RateLimit-Remaining) to them, and start a bucket at a tenth of its budget "
        "per tenth of its window until HubSpot's headers are seen.",
    )
    hubspot_timezone: str = Field(
        "UTC",
        description="IANA time zone of the HubSpot account (e.g. `Europe/Berlin`): its daily "
        "budget resets at midnight there. Private apps only; OAuth calls have no daily limit.",
    )
    daily_reset_utc_hour: int | None = Field(
        None,
        ge=0,
        le=23,
        description="Deprecated: use EVENTQ_HUBSPOT_TIMEZONE. When set, the daily budget "
        "resets at this hour UTC (a fixed-offset zone).",
    )
    queue: str = Field("marketing-events", description="Celery queue for live traffic.")
    bulk_queue: str = Field(
        "marketing-events-bulk",
        description="Lower-priority Celery queue for replays and backfills.",
    )
    bulk_mode: Literal["upsert", "create"] = Field(
        "upsert",
        description="How the worker sends bulk-queue jobs: `upsert` gathers them per rate-limit "
        "bucket into one batch upsert (creates or overwrites each event by its external ids, "
        "one request of the limit); `create` sends each alone, as live jobs are.",
    )
    live_batching: bool = Field(
        False,
        description="Batch live-queue jobs too, as the bulk queue is (needs "
        "EVENTQ_BULK_MODE=upsert); live jobs then wait up to EVENTQ_BATCH_WAIT_MS.",
    )
    batch_size: int = Field(
        100,
        ge=1,
        le=1000,
        description="Most jobs sent in one batch upsert; a batch HubSpot refuses as too large "
        "halves it for that bucket for the life of the worker process.",
    )
    batch_wait_ms: NonNegativeFloat = Field(
        200.0,
        description="Longest a job waits for others of its rate-limit bucket before its batch "
        "is sent (a full batch goes at once).",
    )
    pack_size: int = Field(
        50,
        ge=1,
        le=100,
        description="Most events a producer handing over many at once (`enqueue_many`, "
        "`eventq enqueue FILE`, POST /v1/events/batch) publishes in one Celery message "
        "(`eventq.create_marketing_events`); each event keeps its own job. 1: one message each.",
    )
    key_prefix: str = Field(
        "eventq",
        description="Prefix of every Redis key eventq writes; one per deployment (token, queues).",
    )
    max_attempts: PositiveInt = Field(8, description="Attempts before a job is dead-lettered.")
    max_age_s: PositiveFloat = Field(
        86_400.0, description="Age (since first enqueue) after which a job is dead-lettered."
    )
    backoff_base_s: PositiveFloat = Field(
        2.0, description="First retry delay, doubled per attempt."
    )
    backoff_cap_s: PositiveFloat = Field(600.0, description="Longest retry delay.")
    backoff_jitter: float = Field(
        0.2, ge=0.0, le=1.0, description="Jitter as a fraction of the delay (bounded, ±)."
    )
    connect_timeout_s: PositiveFloat = Field(5.0, description="HubSpot TCP connect timeout.")
    read_timeout_s: PositiveFloat = Field(20.0, description="HubSpot response read timeout.")
    concurrency: PositiveInt = Field(
        64,
        description="Deliveries in flight per worker process (on its event loop). With "
        "EVENTQ_BULK_MODE=upsert a process also takes up to 2 x EVENTQ_BATCH_SIZE jobs that "
        "join batch upserts (one batch filling while the other is sent).",
    )
    worker_processes: PositiveInt | None = Field(
        None,
        description="Delivery processes `eventq worker` runs, each with its own event loop "
        "(default: the CPUs this process may use, container CPU quota included).",
    )
    prefetch_multiplier: PositiveInt = Field(
        1, description="Celery prefetch multiplier; prefetch = concurrency x this."
    )
    visibility_timeout_s: PositiveInt = Field(
        300,
        description="Redis broker visibility timeout: an unacked job is redelivered after this.",
    )
    max_limiter_wait_s: NonNegativeFloat = Field(
        2.0,
        description="A job waits in the worker this long for a rate-limit slot, else it is parked.",
    )
    breaker_failures: PositiveInt = Field(
        5, description="Consecutive 5xx/timeouts that open the circuit breaker."
    )
    breaker_cooldown_s: PositiveFloat = Field(
        15.0, description="How long the breaker stays open before one probe request."
    )
    scheduler_interval_s: PositiveFloat = Field(
        0.2, description="How often each worker moves due jobs from the retry schedule."
    )
    recover_after_s: PositiveFloat | None = Field(
        None,
        description="A job with no progress this long (and an empty queue) is republished; "
        "default: visibility timeout + attempt lock + 30 s.",
    )
    ledger_ttl_s: PositiveInt = Field(
        30 * 86_400,
        description="How long a delivered event is remembered, so a retry or replay of its job "
        "never sends it twice.",
    )
    dedupe_window_s: NonNegativeInt = Field(
        600,
        description="An identical event (same account and external ids) is refused while its job "
        "is live and for this long after it was delivered; after that it gets a new job, sent "
        "with create-or-update (PUT). 0: refused only while live.",
    )
    job_ttl_s: PositiveInt = Field(
        7 * 86_400, description="How long a finished job's status stays readable."
    )
    outcome_stream_max_len: PositiveInt = Field(
        100_000,
        description="About how many entries the outcome stream (`<prefix>:outcomes`, one per "
        "delivered or dead-lettered job) keeps; older ones are trimmed (XADD MAXLEN ~).",
    )
    callback_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Hosts a job's `callbackUrl` may name, comma-separated (`hooks.example.com,"
        "127.0.0.1`); a callback to any other host is refused at enqueue. Empty: no callbacks.",
    )
    callback_secret: SecretStr | None = Field(
        None,
        description="Key of the HMAC-SHA256 signature of every callback (`webhook-signature`); "
        "`whsec_` + base64 as Standard Webhooks libraries use, or any text (its UTF-8 bytes). "
        "Callbacks are not sent without it.",
    )
    callback_queue: str = Field(
        "eventq-callbacks",
        description="Celery queue of callbacks (`eventq.send_callback`), served by the callback "
        "worker (`celery -A worker.callback_app worker`), never by the delivery workers.",
    )
    callback_max_attempts: PositiveInt = Field(
        8, description="Attempts to deliver one callback before it is dead-lettered `callback`."
    )
    callback_backoff_base_s: PositiveFloat = Field(
        2.0, description="First callback retry delay, doubled per attempt (±20% jitter)."
    )
    callback_backoff_cap_s: PositiveFloat = Field(
        120.0,
        description="Longest callback retry delay (kept under the broker's visibility timeout: "
        "a waiting retry is held by the callback worker).",
    )
    callback_timeout_s: PositiveFloat = Field(
        10.0, description="Total timeout of one callback request."
    )
    log_format: Literal["json", "text"] = Field(
        "text", description="`json` for production log shipping, `text` for development."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of eventq's own loggers."
    )
    http_host: str = Field("127.0.0.1", description="Bind address of `eventq serve`.")
    http_port: int = Field(8080, ge=1, le=65535, description="Port of `eventq serve`.")
    trust_forwarded_proto: bool = Field(
        False,
        description=(
            "Behind a TLS-terminating proxy that sets `X-Forwarded-Proto` (and drops the "
            "client's own): the admin session cookie is `Secure` when that header says `https`. "
            "Leave off when clients reach `eventq serve` directly: they could forge the header."
        ),
    )
    max_batch_size: PositiveInt = Field(
        1000, description="Most events accepted in one POST /v1/events/batch."
    )
    max_body_bytes: PositiveInt = Field(
        5 * 1024 * 1024, description="Largest HTTP request body accepted by `eventq serve`."
    )
    metrics_port: int = Field(
        9808,
        ge=0,
        le=65535,
        description="Worker Prometheus port, all processes of `eventq worker` added up "
        "(0 disables).",
    )
    oauth_client_id: str | None = Field(None, description="OAuth app client id (OAuth mode).")
    oauth_client_secret: SecretStr | None = Field(
        None, description="OAuth app client secret (OAuth mode)."
    )
    oauth_client_secret_next: SecretStr | None = Field(
        None,
        description="A second client secret, tried when HubSpot refuses the first (rotation).",
    )
    oauth_accounts_file: Path | None = Field(
        None,
        description="JSON file mapping HubSpot portal id to its refresh token (OAuth mode).",
    )
    oauth_accounts: SecretStr | None = Field(
        None,
        description="The same JSON object in the environment, instead of or besides the file.",
    )
    default_portal_id: str | None = Field(
        None, description="HubSpot portal used for jobs that name none (OAuth mode)."
    )
    oauth_refresh_margin_s: PositiveFloat = Field(
        60.0, description="Refresh an access token this long before it expires."
    )
    oauth_token_url: str | None = Field(
        None,
        description=(
            "OAuth token endpoint; defaults to EVENTQ_HUBSPOT_BASE_URL + /oauth/v3/token "
            "(v1 is switched off on 2027-02-16)."
        ),
    )
    oauth_timeout_s: PositiveFloat = Field(
        10.0, description="Total timeout of one access-token refresh request."
    )
    account_rate_limit: Annotated[RateLimit, NoDecode] = Field(
        default_factory=lambda: RateLimit(110, 10.0),
        description="Request budget of each OAuth account (own limiter bucket), e.g. `110/10s`.",
    )

    @field_validator("callback_allowed_hosts", mode="before")
    @classmethod
    def _parse_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return [h.strip().lower() for h in value.split(",") if h.strip()]
        return value

    @field_validator("api_keys", "admin_api_keys", mode="before")
    @classmethod
    def _parse_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return _parse_named_keys(value)
        return value

    @field_validator("api_keys", "admin_api_keys")
    @classmethod
    def _check_key_strength(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        # The keys are the only thing between the internet and the admin routes, and neither
        # the bearer check nor the login form is throttled: a key must be too long to guess.
        for name, key in value.items():
            if len(key.get_secret_value()) < MIN_KEY_LENGTH:
                raise ValueError(
                    f"key {name!r} is shorter than {MIN_KEY_LENGTH} characters; use a random "
                    "one, e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'"
                )
        return value

    @field_validator("rate_limit", "account_rate_limit", "rate_limit_ceiling", mode="before")
    @classmethod
    def _parse_rate(cls, value: object) -> object:
        if isinstance(value, str):
            return RateLimit.parse(value)
        return value

    @field_validator("redis_sentinels", mode="before")
    @classmethod
    def _parse_sentinels(cls, value: object) -> object:
        if isinstance(value, str):
            return _parse_addresses(value)
        return value

    @field_validator("redis_url", "broker_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and "://" not in value:
            raise ValueError(f"expected a URL such as redis://host:6379/0, got {value!r}")
        return value

    @field_validator("hubspot_base_url", "oauth_token_url")
    @classmethod
    def _check_http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http(s) URL, got {value!r}")
        return value.rstrip("/")

    @field_validator("hubspot_timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value.strip())
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; expected an IANA name such as 'Europe/Berlin'"
            ) from None
        return value.strip()

    @model_validator(mode="after")
    def _check_daily_reset(self) -> Settings:
        if self.daily_reset_utc_hour is not None and self.hubspot_timezone != "UTC":
            raise ValueError(
                "EVENTQ_DAILY_RESET_UTC_HOUR (deprecated) and EVENTQ_HUBSPOT_TIMEZONE are both "
                "set; keep only EVENTQ_HUBSPOT_TIMEZONE"
            )
        return self

    @property
    def daily_reset_zone(self) -> ZoneInfo:
        """Return the zone whose midnight resets the private app's daily budget.

        The deprecated EVENTQ_DAILY_RESET_UTC_HOUR=h becomes the fixed-offset zone whose midnight
        is h:00 UTC.
        """
        hour = self.daily_reset_utc_hour
        if hour is None or hour == 0:
            return ZoneInfo(self.hubspot_timezone)
        # Etc/GMT+h is UTC-h (POSIX sign): its midnight is h:00 UTC
        return ZoneInfo(f"Etc/GMT+{hour}" if hour <= 12 else f"Etc/GMT-{24 - hour}")

    @property
    def daily_reset_setting(self) -> str:
        """Return the variable that sets the daily reset, for log lines."""
        if self.daily_reset_utc_hour is not None:
            return "EVENTQ_DAILY_RESET_UTC_HOUR (deprecated)"
        return "EVENTQ_HUBSPOT_TIMEZONE"

    @model_validator(mode="after")
    def _check_redis_tls(self) -> Settings:
        files = {
            "EVENTQ_REDIS_TLS_CA_FILE": self.redis_tls_ca_file,
            "EVENTQ_REDIS_TLS_CERT_FILE": self.redis_tls_cert_file,
            "EVENTQ_REDIS_TLS_KEY_FILE": self.redis_tls_key_file,
        }
        for name, path in files.items():
            if path is None:
                continue
            if not self.redis_url.startswith("rediss://"):
                raise ValueError(f"{name} is set but EVENTQ_REDIS_URL is not a rediss:// URL")
            if not path.is_file():
                raise ValueError(f"{name}: no such file {str(path)!r}")
        if (self.redis_tls_cert_file is None) != (self.redis_tls_key_file is None):
            raise ValueError("EVENTQ_REDIS_TLS_CERT_FILE and EVENTQ_REDIS_TLS_KEY_FILE go together")
        return self

    @model_validator(mode="after")
    def _check_key_names(self) -> Settings:
        both = sorted(set(self.api_keys) & set(self.admin_api_keys))
        if both:
            raise ValueError(
                f"key name {both[0]!r} is in both EVENTQ_API_KEYS and EVENTQ_ADMIN_API_KEYS; "
                "give each key its own name"
            )
        return self

    @model_validator(mode="after")
    def _check_oauth(self) -> Settings:
        accounts = self.oauth_accounts_file or self.oauth_accounts
        oauth = (self.oauth_client_id, self.oauth_client_secret, accounts)
        if any(oauth) and not all(oauth):
            raise ValueError(
                "OAuth mode needs EVENTQ_OAUTH_CLIENT_ID, EVENTQ_OAUTH_CLIENT_SECRET "
                "and EVENTQ_OAUTH_ACCOUNTS_FILE (or EVENTQ_OAUTH_ACCOUNTS) together"
            )
        return self

    @property
    def effective_oauth_token_url(self) -> str:
        """Return the OAuth token endpoint, falling back to HubSpot's under the base URL."""
        return self.oauth_token_url or self.hubspot_base_url + "/oauth/v3/token"

    @property
    def effective_broker_url(self) -> str:
        """Return the broker URL, falling back to the Redis URL."""
        return self.broker_url or self.redis_url

    @property
    def oauth_enabled(self) -> bool:
        """Return True when OAuth credentials are configured."""
        return self.oauth_client_id is not None

    @property
    def sandbox(self) -> bool:
        """Return True when no HubSpot credentials are configured at all."""
        return self.hubspot_access_token is None and not self.oauth_enabled


def _parse_addresses(text: str) -> list[tuple[str, int]]:
    """Return `host:port,host:port` as pairs; raise ValueError naming the bad item."""
    found = []
    for index, item in enumerate(filter(None, (part.strip() for part in text.split(","))), 1):
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"item {index} ({item!r}) is not `host:port`")
        found.append((host.strip("[]"), int(port)))
    return found


def _parse_named_keys(text: str) -> dict[str, str]:
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        loaded = json.loads(text, object_pairs_hook=_named_keys)
        if not isinstance(loaded, dict):
            raise ValueError("expected a JSON object of name → key")
        return {str(k): str(v) for k, v in loaded.items()}
    pairs: list[tuple[str, str]] = []
    for index, item in enumerate(text.split(","), start=1):
        name, sep, key = item.strip().partition(":")
        if not sep or not name or not key:
            raise ValueError(f"item {index} is not `name:key` (expected `name:key,name2:key2`)")
        pairs.append((name.strip(), key.strip()))
    return _named_keys(pairs)


def _named_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Return `pairs` as a dict; raise ValueError when a name comes twice (one key would be
    silently dropped: its holder would get 401s, or keep access after a rotation)."""
    keys: dict[str, Any] = {}
    for name, key in pairs:
        if name in keys:
            raise ValueError(f"key name {name!r} is given twice; give each key its own name")
        keys[name] = key
    return keys


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    message = first["msg"].removeprefix("Value error, ")
    extra = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    if not first["loc"]:  # a check across settings: its message names them
        return f"invalid settings: {message}{extra}"
    field = str(first["loc"][0])
    variable = field if field.startswith(ENV_PREFIX) else ENV_PREFIX + field.upper()
    return f"invalid setting {variable}: {message}{extra}"


def load_settings(**overrides: object) -> Settings:
    """Return settings read from the environment; raise SettingsError with one clear line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None


def settings_from_env(env: Mapping[str, str], **overrides: object) -> Settings:
    """Return settings whose `EVENTQ_*` values come from `env` (e.g. a child process's
    environment) ahead of this process's own; `overrides` (by field name) win over both."""
    from_env = {
        k.removeprefix(ENV_PREFIX).lower(): v for k, v in env.items() if k.startswith(ENV_PREFIX)
    }
    return load_settings(**{**from_env, **overrides})


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, loaded once."""
    return load_settings()
