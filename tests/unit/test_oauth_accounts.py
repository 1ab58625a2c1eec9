"""OAuth accounts: the secrets file loader, account resolution, reloads, and enqueue checks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from eventq.accounts import AccountsWatcher, UnknownAccount, load_accounts
from eventq.settings import Settings, SettingsError, load_settings
from producers.enqueue import Producer, RejectedEvent
from tests.conftest import valid_event

SECRET_RT = "rt-very-secret-" + "x" * 20


def oauth_settings(accounts_file: Path | None = None, **extra: object) -> Settings:
    options: dict[str, object] = {
        "oauth_client_id": "client-1",
        "oauth_client_secret": "client-secret-1",
        "key_prefix": "unit-oauth",
    }
    if accounts_file is not None:
        options["oauth_accounts_file"] = accounts_file
    options.update(extra)
    return load_settings(**options)


def write(path: Path, content: object) -> Path:
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def one_line_error(settings: Settings) -> str:
    with pytest.raises(SettingsError) as caught:
        load_accounts(settings)
    message = str(caught.value)
    assert "\n" not in message
    assert SECRET_RT not in message
    return message


def test_a_missing_accounts_file_is_named_in_one_line(tmp_path: Path) -> None:
    message = one_line_error(oauth_settings(tmp_path / "absent.json"))
    assert message.startswith("invalid setting EVENTQ_OAUTH_ACCOUNTS_FILE:")
    assert "absent.json does not exist" in message


def test_bad_json_is_named_with_its_position_but_never_quoted(tmp_path: Path) -> None:
    path = write(tmp_path / "a.json", '{"123": "' + SECRET_RT + '",,}')
    message = one_line_error(oauth_settings(path))
    assert message.startswith("invalid setting EVENTQ_OAUTH_ACCOUNTS_FILE: not valid JSON")
    assert "line 1" in message


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (["123"], "expected a JSON object mapping portal id to refresh token, got a list"),
        ({"acme": SECRET_RT}, "portal id 'acme' is not a number"),
        ({"123": ""}, "the refresh token of portal 123 is not a non-empty string"),
        ({"123": 5}, "the refresh token of portal 123 is not a non-empty string"),
        ({}, "no OAuth accounts configured"),
    ],
)
def test_a_malformed_accounts_file_is_named_in_one_line(
    tmp_path: Path, content: object, words: str
) -> None:
    message = one_line_error(oauth_settings(write(tmp_path / "a.json", content)))
    assert "EVENTQ_OAUTH_ACCOUNTS_FILE" in message
    assert words in message


def test_bad_json_in_the_environment_variable_names_that_variable() -> None:
    message = one_line_error(oauth_settings(oauth_accounts="{nope"))
    assert message.startswith("invalid setting EVENTQ_OAUTH_ACCOUNTS: not valid JSON")


def test_a_default_portal_without_a_refresh_token_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "a.json", {"123": SECRET_RT})
    message = one_line_error(oauth_settings(path, default_portal_id="999"))
    assert message.startswith("invalid setting EVENTQ_DEFAULT_PORTAL_ID: portal 999")


def test_the_file_and_the_environment_merge_with_the_file_winning(tmp_path: Path) -> None:
    path = write(tmp_path / "a.json", {"1": "from-file", "2": "file-two"})
    env = json.dumps({"2": "env-two", "3": "env-three"})
    accounts = load_accounts(oauth_settings(path, oauth_accounts=env, default_portal_id="3"))
    assert accounts.portal_ids == ["1", "2", "3"]
    assert accounts.refresh_tokens["2"].get_secret_value() == "file-two"
    assert accounts.source_of("3") == "EVENTQ_OAUTH_ACCOUNTS"
    assert accounts.source_of("1") == "EVENTQ_OAUTH_ACCOUNTS_FILE"
    assert accounts.resolve(None) == "3"


def test_a_single_account_is_the_default_without_a_setting(tmp_path: Path) -> None:
    accounts = load_accounts(oauth_settings(write(tmp_path / "a.json", {"77": SECRET_RT})))
    assert accounts.resolve(None) == "77"
    assert accounts.resolve(" 77 ") == "77"


def test_an_unknown_portal_is_refused_with_a_message_naming_portal_id(tmp_path: Path) -> None:
    path = write(tmp_path / "a.json", {"1": SECRET_RT, "2": "rt-2"})
    accounts = load_accounts(oauth_settings(path))
    with pytest.raises(UnknownAccount) as unknown:
        accounts.resolve("999")
    assert str(unknown.value).startswith("portalId '999' is not a configured HubSpot account")
    assert "known: 1, 2" in str(unknown.value)
    with pytest.raises(UnknownAccount, match="portalId is required"):
        accounts.resolve(None)  # two accounts and no default


def test_the_watcher_reloads_a_changed_file_and_keeps_the_last_good_one(
    tmp_path: Path,
) -> None:
    # Given a watcher that looks at the file every time
    path = write(tmp_path / "a.json", {"1": "rt-1"})
    now = [0.0]
    watcher = AccountsWatcher(oauth_settings(path), check_every_s=1.0, clock=lambda: now[0])
    # When a second account is added (a new inode, as an atomic rename makes)
    write(tmp_path / "b.json", {"1": "rt-1", "2": "rt-2"})
    os.replace(tmp_path / "b.json", path)
    now[0] = 2.0
    # Then it is in force
    assert watcher.current().portal_ids == ["1", "2"]
    # and a broken edit keeps the accounts that worked
    write(tmp_path / "c.json", "{broken")
    os.replace(tmp_path / "c.json", path)
    now[0] = 4.0
    assert watcher.current().portal_ids == ["1", "2"]


def test_the_producer_rejects_an_unknown_account_naming_portal_id(tmp_path: Path) -> None:
    path = write(tmp_path / "a.json", {"1": SECRET_RT, "2": "rt-2"})
    producer = Producer(oauth_settings(path, default_portal_id="1"))
    with pytest.raises(RejectedEvent) as rejected:
        producer.enqueue(valid_event(), portal_id="999")
    [error] = rejected.value.errors
    assert error.field == "portalId"
    assert "'999' is not a configured HubSpot account" in error.message
    assert SECRET_RT not in str(rejected.value)


def test_the_producer_gives_a_job_without_account_the_default(tmp_path: Path) -> None:
    path = write(tmp_path / "a.json", {"1": SECRET_RT, "2": "rt-2"})
    producer = Producer(oauth_settings(path, default_portal_id="2"))
    assert producer.account_for(None) == "2"
    assert producer.account_for("1") == "1"


def test_the_producer_without_oauth_passes_the_portal_through() -> None:
    producer = Producer(load_settings(key_prefix="unit-oauth"))
    assert producer.accounts is None
    assert producer.account_for("anything") == "anything"
