"""Fixtures of the sequester tests: the vlob fixtures (alice, her realm and vlob) and a webhook server."""
from __future__ import annotations

import pytest

from tests.sequester.helpers import WebhookServer
from tests.vlobs.conftest import alice_ws, bob, realm_id, vlob_id  # noqa: F401 (fixtures)


@pytest.fixture
def webhook():
    server = WebhookServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def openssl_keys(tmp_path_factory):
    """Authority and service RSA key pairs made by openssl, as an operator makes them (README)."""
    import subprocess

    folder = tmp_path_factory.mktemp("sequester-keys")
    for name in ("authority", "service", "other"):
        subprocess.run(["openssl", "genrsa", "-out", str(folder / f"{name}.pem"), "2048"], check=True,
                       capture_output=True)
        subprocess.run(["openssl", "rsa", "-in", str(folder / f"{name}.pem"), "-pubout", "-out",
                        str(folder / f"{name}.pub.pem")], check=True, capture_output=True)
    return folder
