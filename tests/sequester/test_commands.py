"""The `sequester_*` management commands: each outcome, and bad input as a clear CommandError."""
from __future__ import annotations

import io
import uuid

import pytest
from asgiref.sync import async_to_sync
from cryptography.hazmat.primitives import serialization
from django.core.management import call_command
from django.core.management.base import CommandError

from sequester import certificates
from sequester.models import SequesterService, ServiceType
from tests.conftest import bootstrap_organization
from tests.sequester.helpers import RsaKey, make_sequestered

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.fixture
def org(openssl_keys):
    """A bootstrapped organization whose sequester authority is the openssl-made key."""
    world = async_to_sync(bootstrap_organization)()
    authority = RsaKey(serialization.load_pem_private_key((openssl_keys / "authority.pem").read_bytes(), None))
    async_to_sync(make_sequestered)(world, authority)
    return world.organization_id


def create(keys, org: str, *extra: str, label: str = "Storage") -> SequesterService:
    run("sequester_create_service", "--service-public-key", str(keys / "service.pub.pem"),
        "--authority-private-key", str(keys / "authority.pem"), "--service-label", label, "--organization", org, *extra)
    return SequesterService.objects.get(service_label=label)


# sequester_create_service --------------------------------------------------------------------------


def test_create_service_storage(openssl_keys, org):
    service = create(openssl_keys, org)
    assert (service.service_type, service.webhook_url, service.disabled_on) == (ServiceType.STORAGE, None, None)
    authority_der = certificates.load_rsa_public_key_pem((openssl_keys / "authority.pub.pem").read_bytes())
    data = certificates.verify_and_load(bytes(service.service_certificate), authority_der)
    assert (data.service_id, data.service_label, data.timestamp) == (service.service_id, "Storage", service.created_on)
    service_der = certificates.load_rsa_public_key_pem((openssl_keys / "service.pub.pem").read_bytes())
    assert data.encryption_key_der == service_der


def test_create_service_webhook(openssl_keys, org):
    service = create(openssl_keys, org, "--service-type", "webhook", "--webhook-url", "https://hook.example.com/x",
                     label="Hook")
    assert (service.service_type, service.webhook_url) == (ServiceType.WEBHOOK, "https://hook.example.com/x")


@pytest.mark.parametrize(("extra", "message"), [
    (["--service-type", "webhook"], "requires --webhook-url"),
    (["--webhook-url", "https://hook.example.com"], "only be used with --service-type webhook"),
    (["--service-type", "webhook", "--webhook-url", "ftp://x"], "Invalid --webhook-url"),
])
def test_create_service_bad_type_options(openssl_keys, org, extra, message):
    with pytest.raises(CommandError, match=message):
        create(openssl_keys, org, *extra)
    assert not SequesterService.objects.exists()


def test_create_service_bad_keys(openssl_keys, org, tmp_path):
    (tmp_path / "garbage.pem").write_text("not a key")
    with pytest.raises(CommandError, match="--service-public-key .*not a PEM public key"):
        run("sequester_create_service", "--service-public-key", str(tmp_path / "garbage.pem"),
            "--authority-private-key", str(openssl_keys / "authority.pem"), "--service-label", "S",
            "--organization", org)
    with pytest.raises(CommandError, match="--authority-private-key .*not an unencrypted PEM private key"):
        run("sequester_create_service", "--service-public-key", str(openssl_keys / "service.pub.pem"),
            "--authority-private-key", str(openssl_keys / "service.pub.pem"), "--service-label", "S",
            "--organization", org)
    with pytest.raises(CommandError, match="Cannot read --service-public-key"):
        run("sequester_create_service", "--service-public-key", str(tmp_path / "missing.pem"),
            "--authority-private-key", str(openssl_keys / "authority.pem"), "--service-label", "S",
            "--organization", org)


def test_create_service_signed_by_another_authority(openssl_keys, org):
    with pytest.raises(CommandError, match="Invalid sequester service certificate: Invalid signature"):
        run("sequester_create_service", "--service-public-key", str(openssl_keys / "service.pub.pem"),
            "--authority-private-key", str(openssl_keys / "other.pem"), "--service-label", "S",
            "--organization", org)


def test_create_service_unknown_or_plain_organization(openssl_keys, org):
    with pytest.raises(CommandError, match="Organization `Nope` doesn't exist"):
        create(openssl_keys, "Nope")
    async_to_sync(bootstrap_organization)("PlainOrg")
    with pytest.raises(CommandError, match="not a sequestered organization"):
        create(openssl_keys, "PlainOrg")


# generate + import ---------------------------------------------------------------------------------


def test_generate_then_import(openssl_keys, org, tmp_path):
    pem = tmp_path / "service.crt"
    out = run("sequester_generate_service_certificate", "--service-label", "Offline", "--service-public-key",
              str(openssl_keys / "service.pub.pem"), "--authority-private-key", str(openssl_keys / "authority.pem"),
              "--output", str(pem))
    text = pem.read_text()
    assert text.startswith(certificates.PEM_HEADER + "\n") and text.endswith(certificates.PEM_FOOTER + "\n")
    assert all(len(line) <= 64 for line in text.splitlines()[1:-1])
    assert "Offline (id: " in out
    run("sequester_import_service_certificate", "--service-certificate", str(pem), "--organization", org,
        "--service-type", "webhook", "--webhook-url", "http://127.0.0.1:9/hook")
    service = SequesterService.objects.get()
    assert service.service_label == "Offline" and bytes(service.service_certificate) == certificates.load_pem(text)
    with pytest.raises(CommandError, match="already exists"):
        run("sequester_import_service_certificate", "--service-certificate", str(pem), "--organization", org)


def test_import_bad_files(openssl_keys, org, tmp_path):
    (tmp_path / "bad.crt").write_text("hello")
    with pytest.raises(CommandError, match="Not a valid Parsec sequester service certificate PEM file"):
        run("sequester_import_service_certificate", "--service-certificate", str(tmp_path / "bad.crt"),
            "--organization", org)
    (tmp_path / "bad2.crt").write_text(f"{certificates.PEM_HEADER}\nAAAA\n{certificates.PEM_FOOTER}\n")
    with pytest.raises(CommandError, match="Invalid sequester service certificate"):
        run("sequester_import_service_certificate", "--service-certificate", str(tmp_path / "bad2.crt"),
            "--organization", org)


# list / update -------------------------------------------------------------------------------------


def test_list_and_update(openssl_keys, org):
    assert run("sequester_list_services", "--organization", org).startswith("Found 0 sequester service(s)")
    first = create(openssl_keys, org, label="First")
    hook = create(openssl_keys, org, "--service-type", "webhook", "--webhook-url", "http://h.example/x", label="Hook")
    assert run("sequester_update_service", "--organization", org, "--service", first.service_id.hex, "--disable") \
        == "Service updated\n"
    out = run("sequester_list_services", "--organization", org)
    assert out.splitlines()[0] == "Found 2 sequester service(s)"
    # Enabled first.
    first_line, hook_line = f"Service First (id: {first.service_id.hex})", f"Service Hook (id: {hook.service_id.hex})"
    assert out.index(hook_line) < out.index(first_line)
    assert "Webhook endpoint URL http://h.example/x" in out and "Disabled on: " in out
    with pytest.raises(CommandError, match="already disabled"):
        run("sequester_update_service", "--organization", org, "--service", first.service_id.hex, "--disable")
    run("sequester_update_service", "--organization", org, "--service", first.service_id.hex, "--enable")
    assert SequesterService.objects.get(pk=first.pk).disabled_on is None
    with pytest.raises(CommandError, match="already enabled"):
        run("sequester_update_service", "--organization", org, "--service", first.service_id.hex, "--enable")


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
        run("sequester_update_service", "--organization", org, *args)


# the reference's database options, given before Django starts -------------------------------------


def _manage(*args: str, cwd) -> "subprocess.CompletedProcess[str]":
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARSEC_")}
    return subprocess.run([str(root / ".venv/bin/python"), str(root / "manage.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_db_option_mocked_refused(tmp_path):
    result = _manage("sequester_list_services", "--organization", "X", "--db", "MOCKED", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "Error: MOCKED DB can not be used with sequester services"


def test_db_option_not_migrated(tmp_path):
    result = _manage("sequester_list_services", "--organization", "X", "--db", f"sqlite:///{tmp_path}/empty.sqlite",
                     cwd=tmp_path)
    assert result.returncode == 1
    assert "unapplied migration(s): run `python manage.py migrate`" in result.stderr
    assert "Traceback" not in result.stderr


def test_create_service_label(openssl_keys, org):
    long_label = "L" * 1000  # the certificate puts no limit on it
    assert create(openssl_keys, org, label=long_label).service_label == long_label
    with pytest.raises(CommandError, match="--service-label must not be empty"):
        create(openssl_keys, org, label=" ")
