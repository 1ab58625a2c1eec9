"""One error tree: every exception of ours is an EventqError, drawn in eventq.errors' docstring."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import eventq.errors
from eventq.accounts import UnknownAccount, load_accounts
from eventq.errors import EventqError, InvalidInput, JobEnded
from eventq.settings import SettingsError, load_settings
from producers.enqueue import RejectedEvent, validate_event
from tests.conftest import valid_event

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("eventq", "worker", "producers", "fake_hubspot", "eventq_cli")


def exception_classes() -> dict[str, type[BaseException]]:
    """Return every exception class defined in our packages, by name (modules that define a
    class are imported; `__main__` files run the program, so they are left out)."""
    found: dict[str, type[BaseException]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name == "__main__.py":
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            names = [node.name for node in tree.body if isinstance(node, ast.ClassDef)]
            if not names:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            module = importlib.import_module(".".join(p for p in parts if p != "__init__"))
            for name in names:
                cls = getattr(module, name)
                if isinstance(cls, type) and issubclass(cls, BaseException):
                    found[name] = cls
    return found


def test_every_exception_of_ours_is_an_eventq_error() -> None:
    classes = exception_classes()
    # the named ones of issue 10 are among those found, so the scan does read the packages
    for name in ("SettingsError", "UnknownAccount", "RejectedEvent", "CredentialsError"):
        assert name in classes
    for name in ("ApiError", "Parked", "DeadLettered", "FakeControlError"):
        assert name in classes
    outside = sorted(name for name, cls in classes.items() if not issubclass(cls, EventqError))
    assert outside == []


def test_the_drawn_tree_names_every_exception_and_no_other() -> None:
    drawn = set(re.findall(r"[├└]── (\w+)", eventq.errors.__doc__ or ""))
    assert drawn == set(exception_classes()) - {"EventqError"}


@pytest.mark.parametrize(
    ("name", "group"),
    [
        ("SettingsError", InvalidInput),
        ("UnknownAccount", InvalidInput),
        ("RejectedEvent", InvalidInput),
        ("Parked", JobEnded),
        ("DeadLettered", JobEnded),
        ("CredentialsUnavailable", EventqError),
    ],
)
def test_each_error_sits_in_its_group(name: str, group: type[BaseException]) -> None:
    assert issubclass(exception_classes()[name], group)


def test_errors_that_were_value_or_runtime_errors_still_are() -> None:
    # callers that catch ValueError or RuntimeError keep working
    assert issubclass(UnknownAccount, ValueError)
    assert issubclass(RejectedEvent, ValueError)
    assert issubclass(SettingsError, RuntimeError)


def test_a_bad_setting_names_its_variable_and_the_fix() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(rate_limit="fast")
    assert caught.value.field == "EVENTQ_RATE_LIMIT"
    assert caught.value.fix is not None
    assert "EVENTQ_RATE_LIMIT" in caught.value.fix


def test_an_unknown_portal_names_portal_id_and_the_fix(tmp_path: Path) -> None:
    accounts_file = tmp_path / "accounts.json"
    accounts_file.write_text('{"1": "rt-one-xxxxxxxxxxxxxxxx", "2": "rt-two-xxxxxxxxxxxxxxxx"}')
    settings = load_settings(
        oauth_client_id="client-1",
        oauth_client_secret="client-secret-1",
        oauth_accounts_file=accounts_file,
    )
    with pytest.raises(UnknownAccount) as caught:
        load_accounts(settings).resolve("999")
    assert caught.value.field == "portalId"
    assert caught.value.fix is not None
    assert "EVENTQ_OAUTH_ACCOUNTS_FILE" in caught.value.fix


def test_a_rejected_event_names_its_first_bad_field_and_the_fix() -> None:
    event = valid_event()
    event["startDateTime"] = "not a date"
    with pytest.raises(RejectedEvent) as caught:
        validate_event(event)
    assert caught.value.field == "startDateTime"
    assert caught.value.fix is not None
    assert [e.field for e in caught.value.errors] == ["startDateTime"]
