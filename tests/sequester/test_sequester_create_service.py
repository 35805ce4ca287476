"""`sequester_create_service`: storage and webhook services, and every bad input as one CommandError line."""
from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.core.management.base import CommandError

from sequester import certificates
from sequester.models import SequesterService, ServiceType
from tests.conftest import bootstrap_organization
from tests.sequester.helpers import create_with_command, run_command

pytestmark = pytest.mark.django_db(transaction=True)


def test_create_service_storage(openssl_keys, org):
    service = create_with_command(openssl_keys, org)
    assert (service.service_type, service.webhook_url, service.disabled_on) == (ServiceType.STORAGE, None, None)
    authority_der = certificates.load_rsa_public_key_pem((openssl_keys / "authority.pub.pem").read_bytes())
    data = certificates.verify_and_load(bytes(service.service_certificate), authority_der)
    assert (data.service_id, data.service_label, data.timestamp) == (service.service_id, "Storage", service.created_on)
    service_der = certificates.load_rsa_public_key_pem((openssl_keys / "service.pub.pem").read_bytes())
    assert data.encryption_key_der == service_der


def test_create_service_webhook(openssl_keys, org):
    service = create_with_command(openssl_keys, org, "--service-type", "webhook",
                                  "--webhook-url", "https://hook.example.com/x", label="Hook")
    assert (service.service_type, service.webhook_url) == (ServiceType.WEBHOOK, "https://hook.example.com/x")


@pytest.mark.parametrize(("extra", "message"), [
    (["--service-type", "webhook"], "requires --webhook-url"),
    (["--webhook-url", "https://hook.example.com"], "only be used with --service-type webhook"),
    (["--service-type", "webhook", "--webhook-url", "ftp://x"], "Invalid --webhook-url"),
])
def test_create_service_bad_type_options(openssl_keys, org, extra, message):
    with pytest.raises(CommandError, match=message):
        create_with_command(openssl_keys, org, *extra)
    assert not SequesterService.objects.exists()


def test_create_service_bad_keys(openssl_keys, org, tmp_path):
    (tmp_path / "garbage.pem").write_text("not a key")
    with pytest.raises(CommandError, match=r"--service-public-key .*not a PEM public key"):
        run_command("sequester_create_service", "--service-public-key", str(tmp_path / "garbage.pem"),
            "--authority-private-key", str(openssl_keys / "authority.pem"), "--service-label", "S",
            "--organization", org)
    with pytest.raises(CommandError, match=r"--authority-private-key .*not an unencrypted PEM private key"):
        run_command("sequester_create_service", "--service-public-key", str(openssl_keys / "service.pub.pem"),
            "--authority-private-key", str(openssl_keys / "service.pub.pem"), "--service-label", "S",
            "--organization", org)
    with pytest.raises(CommandError, match="Cannot read --service-public-key"):
        run_command("sequester_create_service", "--service-public-key", str(tmp_path / "missing.pem"),
            "--authority-private-key", str(openssl_keys / "authority.pem"), "--service-label", "S",
            "--organization", org)


def test_create_service_signed_by_another_authority(openssl_keys, org):
    with pytest.raises(CommandError, match="Invalid sequester service certificate: Invalid signature"):
        run_command("sequester_create_service", "--service-public-key", str(openssl_keys / "service.pub.pem"),
            "--authority-private-key", str(openssl_keys / "other.pem"), "--service-label", "S",
            "--organization", org)


def test_create_service_unknown_or_plain_organization(openssl_keys, org):
    with pytest.raises(CommandError, match="Organization `Nope` doesn't exist"):
        create_with_command(openssl_keys, "Nope")
    async_to_sync(bootstrap_organization)("PlainOrg")
    with pytest.raises(CommandError, match="not a sequestered organization"):
        create_with_command(openssl_keys, "PlainOrg")


def test_create_service_label(openssl_keys, org):
    long_label = "L" * 1000  # the certificate puts no limit on it
    assert create_with_command(openssl_keys, org, label=long_label).service_label == long_label
    with pytest.raises(CommandError, match="--service-label must not be empty"):
        create_with_command(openssl_keys, org, label=" ")
