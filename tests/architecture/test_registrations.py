"""The wire's registration points (protocol/hooks.py): filled by the installed apps, an empty one stops the start."""
from __future__ import annotations

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from protocol import hooks


def test_every_required_function_is_registered_by_the_installed_apps() -> None:
    assert hooks.missing() == []
    hooks.check_registered()  # what the ASGI module runs at startup
    assert [message.id for message in checks.run_checks() if message.id == "protocol.E001"] == []


def test_a_missing_identifier_fails_the_start_naming_it_and_its_app() -> None:
    registered = hooks.identify_invitation.function
    hooks.identify_invitation.function = None
    try:
        with pytest.raises(ImproperlyConfigured, match=r"identify_invitation \(from the invites app\)"):
            hooks.check_registered()
        errors = [message for message in checks.run_checks() if message.id == "protocol.E001"]
        expected = "The wire has no registered identify_invitation (from the invites app)"
        assert [error.msg for error in errors] == [expected]
    finally:
        hooks.identify_invitation.function = registered


def test_an_identifier_registered_twice_is_refused() -> None:
    with pytest.raises(ImproperlyConfigured, match="identify_device registered twice"):
        hooks.identify_device.register(lambda answer: None)  # type: ignore[arg-type, return-value]
    assert hooks.identify_device.function is not None
