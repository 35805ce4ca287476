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
