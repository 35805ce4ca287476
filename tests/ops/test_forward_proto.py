"""`--forward-proto-enforce-https <header>:<value>` (docs/protocol.md#routes): 301 only when the header says plain
HTTP."""
from __future__ import annotations

import pytest
from django.test import Client

from tests.testkit.ws import WsClient


@pytest.fixture
def enforce_https(parsec_settings):
    parsec_settings(forward_proto_enforce_https=("X-Forwarded-Proto", "https"))


def test_header_with_another_value_is_redirected_to_https(enforce_https):
    response = Client().get("/redirect/MyOrg?action=claim_user&token=abc", HTTP_HOST="parsec.example.com",
                            HTTP_X_FORWARDED_PROTO="http")
    assert response.status_code == 301
    assert response["Location"] == "https://parsec.example.com/redirect/MyOrg?action=claim_user&token=abc"


def test_any_method_and_route_is_redirected(enforce_https):
    response = Client().post("/anonymous/MyOrg", data=b"", content_type="application/msgpack",
                             HTTP_HOST="parsec.example.com:8080", HTTP_X_FORWARDED_PROTO="HTTP")
    assert response.status_code == 301
    assert response["Location"] == "https://parsec.example.com:8080/anonymous/MyOrg"


def test_expected_value_is_served(enforce_https):
    response = Client().get("/", HTTP_X_FORWARDED_PROTO="https")
    assert response.status_code == 200


def test_header_name_is_case_insensitive(parsec_settings):
    parsec_settings(forward_proto_enforce_https=("x-forwarded-proto", "https"))
    assert Client().get("/", HTTP_X_FORWARDED_PROTO="http").status_code == 301


def test_value_is_compared_exactly(enforce_https):
    # As the reference: only the configured value passes, `HTTPS` is another value.
    assert Client().get("/", HTTP_X_FORWARDED_PROTO="HTTPS").status_code == 301


def test_request_without_the_header_is_served(enforce_https):
    # Direct or internal requests (health probes, the proxy's own checks) carry no header.
    assert Client().get("/").status_code == 200
    assert Client().get("/health/live").status_code == 200


def test_request_already_over_tls_is_served(enforce_https):
    assert Client().get("/", HTTP_X_FORWARDED_PROTO="http", secure=True).status_code == 200


def test_option_unset_never_redirects(parsec_settings):
    parsec_settings(forward_proto_enforce_https=None)
    assert Client().get("/", HTTP_X_FORWARDED_PROTO="http").status_code == 200


@pytest.mark.django_db(transaction=True)
async def test_websocket_is_not_redirected(enforce_https):
    # The reference redirects HTTP requests only; the official client never sends the header anyway.
    from channels.testing import WebsocketCommunicator

    from parsec_site.asgi import application

    communicator = WebsocketCommunicator(application, "/ws", headers=[(b"x-forwarded-proto", b"http")])
    connected, _ = await communicator.connect()
    assert connected
    assert (await WsClient(communicator).receive())["handshake"] == "challenge"
    await communicator.disconnect()
