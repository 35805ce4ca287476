"""`sequester_update_service --enable/--disable`: toggles a service; bad input is one CommandError line."""
from __future__ import annotations

import uuid

import pytest
from django.core.management.base import CommandError

from sequester.models import SequesterService
from tests.sequester.helpers import create_with_command, run_command

pytestmark = pytest.mark.django_db(transaction=True)


def update(org: str, service: SequesterService, flag: str) -> str:
    return run_command("sequester_update_service", "--organization", org, "--service", service.service_id.hex, flag)


def test_disable_then_enable(openssl_keys, org):
    service = create_with_command(openssl_keys, org)
    assert update(org, service, "--disable") == "Service updated\n"
    service.refresh_from_db()
    assert service.disabled_on is not None
    assert update(org, service, "--enable") == "Service updated\n"
    service.refresh_from_db()
    assert service.disabled_on is None


def test_already_in_that_state(openssl_keys, org):
    service = create_with_command(openssl_keys, org)
    with pytest.raises(CommandError, match="already enabled"):
        update(org, service, "--enable")
    update(org, service, "--disable")
    with pytest.raises(CommandError, match="already disabled"):
        update(org, service, "--disable")


@pytest.mark.parametrize(("args", "message"), [
    (["--enable", "--disable"], "exactly one of --enable and --disable"),
    ([], "exactly one of --enable and --disable"),
    (["--enable", "--service", "xyz"], "--service: `xyz` is not an id"),
    (["--enable", "--service", uuid.uuid4().hex], "doesn't exist"),
])
def test_update_bad_input(org, args, message):
    if "--service" not in args:
        args = [*args, "--service", uuid.uuid4().hex]
    with pytest.raises(CommandError, match=message):
        run_command("sequester_update_service", "--organization", org, *args)
