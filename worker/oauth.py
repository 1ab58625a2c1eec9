"""OAuth credentials: one access token per HubSpot account, refreshed once for all workers.

`token_for(portal)` looks for a token, cheapest first:

1. this process's cache (no I/O; looked at again in Redis every few seconds);
2. Redis `{prefix}:oauth:{portal}:token`, shared by every worker on every host;
3. the token endpoint, called by exactly one worker per expiry: it takes
   `{prefix}:oauth:{portal}:lock` (SET NX PX), looks once more, refreshes, stores the token with
   its lifetime as the key's TTL and releases the lock. The others keep sending with the
   still-valid token, or, when there is none, wait (bounded) for the winner's result.

A token is refreshed `EVENTQ_OAUTH_REFRESH_MARGIN_S` before it expires (at most half its life
early). `{prefix}:oauth:{portal}:hold` stops refreshing for an account: `paused` after
`invalid_grant` or an answer for another account (`hub_id` not the configured portal), until a
different refresh token is configured; `failed` for a short while after another refusal;
`unavailable` while the token endpoint is down or rate limited (for its `Retry-After`). Other
accounts are unaffected.

Refresh tokens: the configured one (accounts file), unless HubSpot rotated it. A refresh answer
carrying a different refresh token stores that one in `{prefix}:oauth:{portal}:refresh` (with
the fingerprint of the configured token it replaces), in the same transaction as the access
token and while holding the refresh lock, so exactly one refresh at a time uses and replaces it.
Later refreshes, on any worker and after restarts, use the stored one while the configured one
is unchanged; a newly configured refresh token wins over it. If HubSpot refuses the stored one
(`invalid_grant`), it is dropped and the configured one is tried once before pausing.

Redis holds the access token (short-lived; Redis is already trusted with every job), a rotated
refresh token (the only copy of it), and truncated SHA-256 fingerprints of tokens for
comparisons; never the client secret. No log line, exception or DLQ message from here contains
a token or the secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import SecretStr

from eventq.accounts import Accounts, AccountsWatcher, UnknownAccount
from eventq.keys import Keys
from eventq.redis_io import as_text, load_lua
from eventq.settings import RateLimit, Settings, SettingsError
from worker.credentials import AccessToken, CredentialsError, CredentialsUnavailable
from worker.rate_limit import RateLimiter, bucket_for_portal
from worker.token_endpoint import Granted, Rejected, TokenEndpoint, Unavailable, parse_scopes

if TYPE_CHECKING:
    import aiohttp
    import redis.asyncio

__all__ = ["OAuthCredentials", "fingerprint"]

log = logging.getLogger("eventq.oauth")

_REPLAY = "`eventq dlq replay --all --reason auth`"
_LOCAL_RECHECK_S = 5.0  # how stale this process's view of a pause or a replaced token may be
_POLL_S = 0.02  # how often a waiting worker looks for the refresh winner's token
_MIN_VALID_MS = 250  # a token closer to expiry than this is not worth sending
_MIN_EXPIRED_AGE_MS = 1_000  # "expired" for a younger token: clocks disagree, do not loop
_FAILED_HOLD_MS = 30_000  # after a refusal other than invalid_grant, ask HubSpot again after this
_LOCK_SLACK_S = 5.0


def fingerprint(secret: str) -> str:
    """Return a short SHA-256 fingerprint of a token, to compare tokens without storing them."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class _Snapshot:
    """One consistent read of an account's Redis state."""

    token: str | None
    fp: str
    lifetime_ms: int
    left_ms: int  # PTTL of the token key
    hold: Mapping[str, str]
    hold_left_ms: int
    scopes: frozenset[str] | None = None
    refresh: str | None = None  # a rotated refresh token HubSpot answered
    refresh_origin: str = ""  # fingerprint of the configured refresh token it replaced

    def usable(self, margin_ms: int) -> bool:
        """Return True when the token need not be refreshed yet."""
        early_ms = min(margin_ms, self.lifetime_ms // 2)
        return self.token is not None and self.left_ms > early_ms

    def valid(self) -> bool:
        """Return True when the token still works, though it is due for refresh."""
        return self.token is not None and self.left_ms > _MIN_VALID_MS


@dataclass(frozen=True)
class _Cached:
    token: AccessToken
    fp: str
    recheck_at: float  # monotonic seconds


class OAuthCredentials:
    """Access tokens for many HubSpot accounts, refreshed single-flight across all workers."""

    def __init__(
        self,
        *,
        redis: redis.asyncio.Redis,
        endpoint: TokenEndpoint,
        accounts: AccountsWatcher,
        limiter: RateLimiter,
        account_limit: RateLimit,
        key_prefix: str,
        margin_s: float,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._endpoint = endpoint
        self._accounts = accounts
        self._limiter = limiter
        self._account_limit = account_limit
        self._keys = Keys(key_prefix)
        self._margin_ms = int(margin_s * 1000)
        self._lock_ttl_ms = int((timeout_s + _LOCK_SLACK_S) * 1000)
        self._wait_s = timeout_s + _LOCK_SLACK_S + 1.0
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._unlock_script = redis.register_script(load_lua("oauth_unlock", "worker"))
        self._invalidate_script = redis.register_script(load_lua("oauth_invalidate", "worker"))

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        redis: redis.asyncio.Redis,
        session: aiohttp.ClientSession,
        limiter: RateLimiter,
    ) -> OAuthCredentials:
        """Return credentials built from the OAuth settings, refreshing over `session`.

        Each account's budget is set on `limiter`, the one the deliveries acquire from.

        Raises SettingsError when the client or the accounts are missing or malformed.
        """
        if settings.oauth_client_id is None or settings.oauth_client_secret is None:
            raise SettingsError(
                "invalid setting EVENTQ_OAUTH_CLIENT_ID: OAuth mode needs the client id and "
                "EVENTQ_OAUTH_CLIENT_SECRET"
            )
        endpoint = TokenEndpoint(
            session,
            settings.effective_oauth_token_url,
            client_id=settings.oauth_client_id,
            client_secret=settings.oauth_client_secret,
            next_client_secret=settings.oauth_client_secret_next,
            timeout_s=settings.oauth_timeout_s,
        )
        return cls(
            redis=redis,
            endpoint=endpoint,
            accounts=AccountsWatcher(settings),
            limiter=limiter,
            account_limit=settings.account_rate_limit,
            key_prefix=settings.key_prefix,
            margin_s=settings.oauth_refresh_margin_s,
            timeout_s=settings.oauth_timeout_s,
        )

    async def token_for(self, portal_id: str | None) -> AccessToken:
        """Return a valid access token of the job's account (the default when None).

        Raises CredentialsError (dead-letter as `auth`) for an unknown or paused account or a
        refusal by HubSpot, CredentialsUnavailable (wait, then retry) when no token can be had
        now. Redis errors propagate.
        """
        accounts = self._accounts.current()
        try:
            portal = accounts.resolve(portal_id)
        except UnknownAccount as error:
            raise CredentialsError(f"{error}, then {_REPLAY}", portal_id=portal_id) from None
        cached = self._fresh(portal)
        if cached is not None:
            return cached
        lock = self._locks.setdefault(portal, asyncio.Lock())
        async with lock:  # one coroutine per process goes to Redis for this account
            cached = self._fresh(portal)
            if cached is not None:
                return cached
            await self._limiter.ensure_budget(bucket_for_portal(portal), self._account_limit)
            return await self._obtain(portal, accounts)

    async def refresh_after_401(self, token: AccessToken) -> bool:
        """Forget `token` after HubSpot said it expired, if it is still the cached one.

        Returns True to retry at once (the next `token_for` refreshes, single-flight, or picks
        up the token another worker already got); False when the token is too young to have
        expired, so refreshing again would loop. Redis errors propagate.
        """
        portal = token.portal_id
        if portal is None:
            return False
        fp = fingerprint(token.value.get_secret_value())
        cached = self._cache.get(portal)
        if cached is not None and cached.fp == fp:
            del self._cache[portal]
        verdict = as_text(
            await self._invalidate_script(
                [self._keys.oauth(portal, "token")], [fp, _MIN_EXPIRED_AGE_MS]
            )
        )
        if verdict == "too_new":
            log.warning(
                "HubSpot says the access token of portal %s expired less than %d ms after it "
                "was issued; not refreshing again",
                portal,
                _MIN_EXPIRED_AGE_MS,
            )
            return False
        if verdict == "invalidated":
            log.info("access token of portal %s expired at HubSpot; refreshing", portal)
        return True

    def _fresh(self, portal: str) -> AccessToken | None:
        cached = self._cache.get(portal)
        if cached is not None and self._clock() < cached.recheck_at:
            return cached.token
        return None

    async def _obtain(self, portal: str, accounts: Accounts) -> AccessToken:
        refresh_fp = fingerprint(accounts.refresh_tokens[portal].get_secret_value())
        deadline = self._clock() + self._wait_s
        while True:
            snap = await self._read(portal)
            if snap.usable(self._margin_ms):
                return self._remember(portal, snap)
            held = _while_held(portal, snap, refresh_fp)
            if held is not None:
                return held
            holder = await self._try_lock(portal)
            if holder is not None:
                try:
                    return await self._refresh_holding_lock(portal, accounts, refresh_fp)
                finally:
                    await self._unlock_script([self._keys.oauth(portal, "lock")], [holder])
            if snap.valid() and snap.token is not None:
                return _access(portal, snap.token, snap.scopes)  # another worker is refreshing
            if self._clock() >= deadline:
                raise CredentialsUnavailable(
                    f"timed out waiting for another worker to refresh portal {portal}'s token",
                    portal_id=portal,
                )
            await asyncio.sleep(_POLL_S)

    async def _try_lock(self, portal: str) -> str | None:
        """Return this worker's holder id if it won the account's refresh lock, else None."""
        holder = secrets.token_hex(8)
        won = await self._redis.set(
            self._keys.oauth(portal, "lock"), holder, nx=True, px=self._lock_ttl_ms
        )
        return holder if won else None

    async def _refresh_holding_lock(
        self, portal: str, accounts: Accounts, refresh_fp: str
    ) -> AccessToken:
        snap = await self._read(portal)  # the previous holder may have refreshed a moment ago
        if snap.usable(self._margin_ms):
            return self._remember(portal, snap)
        held = _while_held(portal, snap, refresh_fp)
        if held is not None:
            return held
        configured = accounts.refresh_tokens[portal]
        stored = snap.refresh if snap.refresh_origin == refresh_fp else None  # rotated since
        rotated = stored is not None
        answer = await self._endpoint.refresh(configured if stored is None else SecretStr(stored))
        if rotated and isinstance(answer, Rejected) and answer.kind == "invalid_grant":
            log.warning(
                "HubSpot refused portal %s's rotated refresh token (invalid_grant); dropping it "
                "and trying the configured one",
                portal,
            )
            await self._redis.delete(self._keys.oauth(portal, "refresh"))
            rotated = False
            answer = await self._endpoint.refresh(configured)
        if isinstance(answer, Granted) and answer.hub_id not in (None, portal):
            message = _mismatch_message(portal, accounts, answer.hub_id)
            await self._hold(portal, "paused", message, refresh_fp, None)
            log.error("OAuth refresh refused: %s", message)
        elif isinstance(answer, Granted):
            return await self._store(portal, answer, refresh_fp, rotated)
        elif isinstance(answer, Unavailable):
            message = f"cannot refresh portal {portal}'s access token now: {answer.detail}"
            await self._hold(portal, "unavailable", message, refresh_fp, answer.retry_after_s)
            log.warning("%s; asking again in %.0f s", message, answer.retry_after_s)
        else:
            message = _rejection_message(portal, accounts, answer)
            if answer.kind == "invalid_grant":
                await self._hold(portal, "paused", message, refresh_fp, None)
            else:
                await self._hold(portal, "failed", message, refresh_fp, _FAILED_HOLD_MS / 1000)
            log.error("OAuth refresh refused: %s", message)
        held = _while_held(portal, await self._read(portal), refresh_fp)
        if held is None:  # the hold vanished at once (clock jump): let the job wait a moment
            raise CredentialsUnavailable(message, portal_id=portal)
        return held

    async def _read(self, portal: str) -> _Snapshot:
        token_key, hold_key = self._keys.oauth(portal, "token"), self._keys.oauth(portal, "hold")
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hmget(token_key, ["token", "fp", "lifetime_ms", "scopes"])
            pipe.pttl(token_key)
            pipe.hgetall(hold_key)
            pipe.pttl(hold_key)
            pipe.hmget(self._keys.oauth(portal, "refresh"), ["token", "origin"])
            replies = await pipe.execute()
        (token, fp, lifetime, scopes), left, hold, hold_left, (refresh, origin) = replies
        return _Snapshot(
            token=None if token is None else as_text(token),
            fp="" if fp is None else as_text(fp),
            lifetime_ms=int(as_text(lifetime)) if lifetime is not None else 0,
            left_ms=int(left),
            hold={as_text(k): as_text(v) for k, v in hold.items()},
            hold_left_ms=int(hold_left),
            scopes=None if scopes is None else parse_scopes(json.loads(as_text(scopes))),
            refresh=None if refresh is None else as_text(refresh),
            refresh_origin="" if origin is None else as_text(origin),
        )

    async def _store(
        self, portal: str, answer: Granted, refresh_fp: str, used_rotated: bool
    ) -> AccessToken:
        """Store the new access token and, if HubSpot rotated it, the new refresh token.

        `refresh_fp` fingerprints the configured refresh token; `used_rotated` says whether the
        refresh used a stored rotated one instead.
        """
        token = answer.access_token.get_secret_value()
        fp = fingerprint(token)
        lifetime_ms = max(1, int(answer.expires_in_s * 1000))
        token_key, refresh_key = (
            self._keys.oauth(portal, "token"),
            self._keys.oauth(portal, "refresh"),
        )
        fields: dict[str, str | int] = {"token": token, "fp": fp, "lifetime_ms": lifetime_ms}
        if answer.scopes is not None:
            fields["scopes"] = json.dumps(sorted(answer.scopes))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(token_key)
            pipe.hset(token_key, mapping=fields)
            pipe.pexpire(token_key, lifetime_ms)
            pipe.delete(self._keys.oauth(portal, "hold"))  # a new refresh token ends a pause
            if answer.new_refresh_token is not None:
                new = answer.new_refresh_token.get_secret_value()
                pipe.delete(refresh_key)
                pipe.hset(refresh_key, mapping={"token": new, "origin": refresh_fp})
            elif not used_rotated:
                pipe.delete(refresh_key)  # the configured one works: a stored one is stale
            await pipe.execute()
        log.info(
            "refreshed the access token of portal %s (valid %.0f s)", portal, answer.expires_in_s
        )
        if answer.new_refresh_token is not None:
            log.warning(
                "HubSpot rotated portal %s's refresh token; eventq stored the new one in Redis "
                "and uses it from now on (the accounts file still holds the old one)",
                portal,
            )
        snap = _Snapshot(token, fp, lifetime_ms, lifetime_ms, {}, 0, answer.scopes)
        return self._remember(portal, snap)

    async def _hold(
        self, portal: str, kind: str, message: str, refresh_fp: str, for_s: float | None
    ) -> None:
        hold_key = self._keys.oauth(portal, "hold")
        fields = {"kind": kind, "message": message, "refresh_fp": refresh_fp}
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(hold_key)
            pipe.hset(hold_key, mapping=fields)
            if for_s is not None:
                pipe.pexpire(hold_key, max(1, int(for_s * 1000)))
            if kind == "paused":
                pipe.delete(self._keys.oauth(portal, "token"))  # the account's jobs stop at once
            await pipe.execute()

    def _remember(self, portal: str, snap: _Snapshot) -> AccessToken:
        assert snap.token is not None  # callers checked usable()
        access = _access(portal, snap.token, snap.scopes)
        now = self._clock()
        early_ms = min(self._margin_ms, snap.lifetime_ms // 2)
        refresh_at = now + (snap.left_ms - early_ms) / 1000
        self._cache[portal] = _Cached(access, snap.fp, min(refresh_at, now + _LOCAL_RECHECK_S))
        return access


def _access(portal: str, token: str, scopes: frozenset[str] | None) -> AccessToken:
    return AccessToken(SecretStr(token), bucket_for_portal(portal), portal, scopes)


def _while_held(portal: str, snap: _Snapshot, refresh_fp: str) -> AccessToken | None:
    """Return None when the account is not on hold; else its still-valid token, or raise.

    A paused account (invalid_grant) raises CredentialsError until a different refresh token is
    configured; after another refusal or while the token endpoint is down, the current token is
    used until it expires, then the job is dead-lettered or waits.
    """
    kind = snap.hold.get("kind")
    if kind is None:
        return None
    if kind == "paused":
        if snap.hold.get("refresh_fp") != refresh_fp:
            return None  # rotated since: try the new refresh token (success ends the pause)
    elif snap.valid() and snap.token is not None:
        return _access(portal, snap.token, snap.scopes)
    message = snap.hold.get("message", f"portal {portal} is on hold")
    if kind == "unavailable":
        wait_s = max(0.1, snap.hold_left_ms / 1000)
        raise CredentialsUnavailable(message, portal_id=portal, retry_after_s=wait_s)
    raise CredentialsError(message, portal_id=portal)


def _mismatch_message(portal: str, accounts: Accounts, hub_id: str) -> str:
    """Return the DLQ message when the refresh token of `portal` is another account's."""
    source = accounts.source_of(portal)
    return (
        f"the refresh token configured for portal {portal} belongs to HubSpot account {hub_id} "
        f"(the token endpoint answered hub_id {hub_id}, expected {portal}): put portal "
        f'{portal}\'s own refresh token under "{portal}" in {source} (or move this one under '
        f'"{hub_id}"), then {_REPLAY}'
    )


def _rejection_message(portal: str, accounts: Accounts, answer: Rejected) -> str:
    """Return what an admin reads in the DLQ: what happened and what to do."""
    if answer.kind == "invalid_grant":
        return (
            f"refresh token for portal {portal} was rejected (invalid_grant: {answer.message}): "
            f"re-authorize the app for this account and put the new refresh token in "
            f"{accounts.source_of(portal)}, then {_REPLAY}"
        )
    if answer.kind == "invalid_client":
        return (
            f"HubSpot rejected the OAuth client while refreshing portal {portal}'s token "
            f"(invalid_client: {answer.message}): check EVENTQ_OAUTH_CLIENT_ID and "
            f"EVENTQ_OAUTH_CLIENT_SECRET, restart the workers, then {_REPLAY}"
        )
    return (
        f"HubSpot refused to refresh portal {portal}'s access token (HTTP {answer.status}: "
        f"{answer.message}): check the app and the account, then {_REPLAY}"
    )
