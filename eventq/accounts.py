"""OAuth accounts: the HubSpot portals eventq may deliver to, and each one's refresh token.

Accounts come from `EVENTQ_OAUTH_ACCOUNTS_FILE` and/or `EVENTQ_OAUTH_ACCOUNTS`, each a JSON
object `{"<portal id>": "<refresh token>", ...}` (the file wins for a portal named in both).
Producers use only the portal ids (reject unknown accounts at enqueue); workers use the tokens.
Refresh tokens are held as `SecretStr` and never appear in a message or exception raised here.

The file is re-read when it changes (`AccountsWatcher`), so a refresh token can be rotated or an
account added without restarting anything.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from eventq.errors import InvalidInput
from eventq.settings import Settings, SettingsError

__all__ = [
    "DEFAULT_VAR",
    "ENV_VAR",
    "FILE_VAR",
    "Accounts",
    "AccountsWatcher",
    "UnknownAccount",
    "load_accounts",
    "parse_accounts",
]

log = logging.getLogger("eventq.accounts")

FILE_VAR = "EVENTQ_OAUTH_ACCOUNTS_FILE"
ENV_VAR = "EVENTQ_OAUTH_ACCOUNTS"
DEFAULT_VAR = "EVENTQ_DEFAULT_PORTAL_ID"
_SHOWN_IDS = 5  # an error lists this many known portal ids at most


class UnknownAccount(InvalidInput, ValueError):
    """A job names a portal no configured account matches (or names none and there is no default).

    The message names `portalId` and says what to do; `portal_id` is the id the job named.
    """

    def __init__(self, message: str, portal_id: str | None) -> None:
        super().__init__(
            message,
            field="portalId",
            fix=f"name a configured portal in portalId, or add its refresh token to {FILE_VAR}",
        )
        self.portal_id = portal_id


@dataclass(frozen=True)
class Accounts:
    """The configured OAuth accounts: refresh token and source variable per portal id."""

    refresh_tokens: Mapping[str, SecretStr]
    sources: Mapping[str, str]  # portal id -> the variable its refresh token came from
    default_portal_id: str | None

    @property
    def portal_ids(self) -> list[str]:
        """Return the configured portal ids, sorted."""
        return sorted(self.refresh_tokens)

    def resolve(self, portal_id: str | None) -> str:
        """Return the portal a job is for: its own `portalId`, else the default account.

        Raises UnknownAccount when the id is not configured, or when the job names none and
        there is no default.
        """
        if portal_id is None or not portal_id.strip():
            if self.default_portal_id is None:
                raise UnknownAccount(
                    f"portalId is required: {len(self.refresh_tokens)} OAuth accounts are "
                    f"configured and {DEFAULT_VAR} is not set",
                    None,
                )
            return self.default_portal_id
        portal_id = portal_id.strip()
        if portal_id not in self.refresh_tokens:
            raise UnknownAccount(
                f"portalId {portal_id!r} is not a configured HubSpot account "
                f"(known: {self._known()}); add its refresh token to {FILE_VAR} or fix the "
                "job's portalId",
                portal_id,
            )
        return portal_id

    def source_of(self, portal_id: str) -> str:
        """Return the variable that holds `portal_id`'s refresh token."""
        return self.sources.get(portal_id, FILE_VAR)

    def _known(self) -> str:
        ids = self.portal_ids
        shown = ", ".join(ids[:_SHOWN_IDS])
        return shown + (f" and {len(ids) - _SHOWN_IDS} more" if len(ids) > _SHOWN_IDS else "")


def parse_accounts(text: str, variable: str) -> dict[str, SecretStr]:
    """Return portal id -> refresh token from a JSON object.

    Raises SettingsError naming `variable`, in one line that never quotes the text (it holds
    secrets).
    """
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as error:
        # str(error) is message and position only; error.doc (the secrets) is dropped here
        raise SettingsError(
            f"invalid setting {variable}: not valid JSON ({error.msg} at line {error.lineno}, "
            f"column {error.colno})"
        ) from None
    if not isinstance(loaded, dict):
        raise SettingsError(
            f"invalid setting {variable}: expected a JSON object mapping portal id to refresh "
            f"token, got a {type(loaded).__name__}"
        )
    accounts: dict[str, SecretStr] = {}
    for key, value in loaded.items():
        portal_id = key.strip()
        if not portal_id.isdigit():
            raise SettingsError(
                f"invalid setting {variable}: portal id {key!r} is not a number (HubSpot hub id)"
            )
        if not isinstance(value, str) or not value.strip():
            raise SettingsError(
                f"invalid setting {variable}: the refresh token of portal {portal_id} is not a "
                "non-empty string"
            )
        accounts[portal_id] = SecretStr(value.strip())
    return accounts


def _read_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(f"invalid setting {FILE_VAR}: file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise SettingsError(f"invalid setting {FILE_VAR}: cannot read {path} ({reason})") from None


def load_accounts(settings: Settings) -> Accounts:
    """Return the OAuth accounts the settings configure.

    Raises SettingsError (one line naming the variable) for a missing or unreadable file, bad
    JSON, no accounts at all, or a default portal that is not one of them.
    """
    tokens: dict[str, SecretStr] = {}
    sources: dict[str, str] = {}
    if settings.oauth_accounts is not None:
        from_env = parse_accounts(settings.oauth_accounts.get_secret_value(), ENV_VAR)
        tokens.update(from_env)
        sources.update(dict.fromkeys(from_env, ENV_VAR))
    if settings.oauth_accounts_file is not None:
        from_file = parse_accounts(_read_file(settings.oauth_accounts_file), FILE_VAR)
        tokens.update(from_file)
        sources.update(dict.fromkeys(from_file, FILE_VAR))
    if not tokens:
        raise SettingsError(f"invalid setting {FILE_VAR}: no OAuth accounts configured")
    return Accounts(tokens, sources, _default(settings.default_portal_id, tokens))


def _default(configured: str | None, tokens: Mapping[str, SecretStr]) -> str | None:
    if configured is None:
        # one account needs no default setting: it is the only place a job can go
        return next(iter(tokens)) if len(tokens) == 1 else None
    configured = configured.strip()
    if configured not in tokens:
        raise SettingsError(
            f"invalid setting {DEFAULT_VAR}: portal {configured} has no refresh token in "
            f"{FILE_VAR} or {ENV_VAR}"
        )
    return configured


def _file_stamp(path: Path | None) -> tuple[int, int, int] | None:
    if path is None:
        return None
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size, info.st_ino)


class AccountsWatcher:
    """The current accounts, re-read when the accounts file changes (checked every few seconds).

    A file that turns bad (half-written, invalid JSON) is reported in one log line and the last
    good accounts stay in force, so a rotation mistake never stops delivery.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        check_every_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Load the accounts now; raise SettingsError when they are missing or malformed."""
        self._settings = settings
        self._check_every_s = check_every_s
        self._clock = clock
        self._stamp = _file_stamp(settings.oauth_accounts_file)
        self._accounts = load_accounts(settings)
        self._next_check = clock() + check_every_s

    def current(self) -> Accounts:
        """Return the accounts in force, re-reading the file first if it changed."""
        now = self._clock()
        if now < self._next_check:
            return self._accounts
        self._next_check = now + self._check_every_s
        stamp = _file_stamp(self._settings.oauth_accounts_file)
        if stamp is not None and stamp != self._stamp:
            self._reload(stamp)
        return self._accounts

    def _reload(self, stamp: tuple[int, int, int]) -> None:
        self._stamp = stamp  # a bad version is reported once, not at every check
        try:
            accounts = load_accounts(self._settings)
        except SettingsError as error:
            log.warning("kept the previous OAuth accounts: %s", error)
            return
        self._accounts = accounts
        log.info("reloaded %d OAuth accounts from %s", len(accounts.refresh_tokens), FILE_VAR)
