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


@pytest.fixture
def org(transactional_db, openssl_keys):
    """A bootstrapped organization whose sequester authority is the openssl-made key; its id."""
    from asgiref.sync import async_to_sync
    from cryptography.hazmat.primitives import serialization

    from tests.conftest import bootstrap_organization
    from tests.sequester.helpers import RsaKey, make_sequestered

    world = async_to_sync(bootstrap_organization)()
    authority = RsaKey(serialization.load_pem_private_key((openssl_keys / "authority.pem").read_bytes(), None))
    async_to_sync(make_sequestered)(world, authority)
    return world.organization_id
