"""`sequester_generate_service_certificate`: an offline, PEM-armoured certificate signed by the authority."""
from __future__ import annotations

import pytest
from django.core.management.base import CommandError

from sequester import certificates
from tests.sequester.helpers import run_command


def generate(keys, output, *, authority: str = "authority.pem", label: str = "Offline") -> str:
    return run_command("sequester_generate_service_certificate", "--service-label", label,
                       "--service-public-key", str(keys / "service.pub.pem"),
                       "--authority-private-key", str(keys / authority), "--output", str(output))


def test_ok(openssl_keys, tmp_path):
    pem = tmp_path / "service.crt"
    out = generate(openssl_keys, pem)
    text = pem.read_text()
    lines = text.splitlines()
    assert (lines[0], lines[-1]) == (certificates.PEM_HEADER, certificates.PEM_FOOTER) and text.endswith("\n")
    assert all(len(line) <= 64 for line in lines[1:-1])
    authority = certificates.load_rsa_public_key_pem((openssl_keys / "authority.pub.pem").read_bytes())
    data = certificates.verify_and_load(certificates.load_pem(text), authority)
    assert data.service_label == "Offline"
    assert f"Sequester service certificate Offline (id: {data.service_id.hex}) exported in {pem}" in out


def test_bad_input(openssl_keys, tmp_path):
    with pytest.raises(CommandError, match=r"--authority-private-key .*not an unencrypted PEM private key"):
        generate(openssl_keys, tmp_path / "x.crt", authority="authority.pub.pem")
    with pytest.raises(CommandError, match="Cannot write --output"):
        generate(openssl_keys, tmp_path / "missing" / "x.crt")
    with pytest.raises(CommandError, match="--service-label must not be empty"):
        generate(openssl_keys, tmp_path / "x.crt", label="")
