"""`sequester_list_services`: every service of the organization, enabled ones first."""
from __future__ import annotations

import pytest
from django.core.management.base import CommandError

from tests.sequester.helpers import create_with_command, run_command

pytestmark = pytest.mark.django_db(transaction=True)


def test_ok(openssl_keys, org):
    assert run_command("sequester_list_services", "--organization", org) == "Found 0 sequester service(s)\n"
    first = create_with_command(openssl_keys, org, label="First")
    hook = create_with_command(openssl_keys, org, "--service-type", "webhook", "--webhook-url", "http://h.example/x",
                               label="Hook")
    run_command("sequester_update_service", "--organization", org, "--service", first.service_id.hex, "--disable")
    out = run_command("sequester_list_services", "--organization", org)
    assert out.splitlines()[0] == "Found 2 sequester service(s)"
    first_line, hook_line = f"Service First (id: {first.service_id.hex})", f"Service Hook (id: {hook.service_id.hex})"
    assert out.index(hook_line) < out.index(first_line)  # enabled first
    assert "\tService type: webhook\n\tWebhook endpoint URL http://h.example/x\n" in out
    assert "\tService type: storage\n\tDisabled on: " in out


def test_not_a_sequestered_organization(org):
    with pytest.raises(CommandError, match="Organization `Nope` doesn't exist"):
        run_command("sequester_list_services", "--organization", "Nope")
