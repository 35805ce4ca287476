"""`sequester_import_service_certificate`: registers a service from a generated certificate file."""
from __future__ import annotations

import pytest
from django.core.management.base import CommandError

from sequester import certificates
from sequester.models import SequesterService, ServiceType
from tests.sequester.helpers import run_command

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pem(openssl_keys, tmp_path):
    path = tmp_path / "service.crt"
    run_command("sequester_generate_service_certificate", "--service-label", "Offline",
                "--service-public-key", str(openssl_keys / "service.pub.pem"),
                "--authority-private-key", str(openssl_keys / "authority.pem"), "--output", str(path))
    return path


def import_(pem, org: str, *extra: str) -> str:
    return run_command("sequester_import_service_certificate", "--service-certificate", str(pem),
                       "--organization", org, *extra)


def test_ok(org, pem):
    out = import_(pem, org, "--service-type", "WEBHOOK", "--webhook-url", "http://127.0.0.1:9/hook")
    service = SequesterService.objects.get()
    assert out == f"Service created: Offline (id: {service.service_id.hex})\n"
    assert (service.service_label, service.service_type, service.webhook_url) == (
        "Offline", ServiceType.WEBHOOK, "http://127.0.0.1:9/hook")
    assert bytes(service.service_certificate) == certificates.load_pem(pem.read_text())


def test_already_exists(org, pem):
    import_(pem, org)
    with pytest.raises(CommandError, match="already exists"):
        import_(pem, org)


def test_bad_files(org, tmp_path):
    (tmp_path / "bad.crt").write_text("hello")
    with pytest.raises(CommandError, match="Not a valid Parsec sequester service certificate PEM file"):
        import_(tmp_path / "bad.crt", org)
    (tmp_path / "bad2.crt").write_text(f"{certificates.PEM_HEADER}\nAAAA\n{certificates.PEM_FOOTER}\n")
    with pytest.raises(CommandError, match="Invalid sequester service certificate"):
        import_(tmp_path / "bad2.crt", org)
    (tmp_path / "binary.crt").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(CommandError, match="--service-certificate"):
        import_(tmp_path / "binary.crt", org)
    with pytest.raises(CommandError, match="Cannot read --service-certificate"):
        import_(tmp_path / "missing.crt", org)


def test_wrong_type_options(org, pem):
    with pytest.raises(CommandError, match="requires --webhook-url"):
        import_(pem, org, "--service-type", "webhook")
    assert not SequesterService.objects.exists()
