"""The small HTML surface: landing page, static files, 404, `/redirect`, and `/ws` without upgrade."""
from __future__ import annotations

import pytest
from django.test import Client

from parsec_site.addr import BackendAddr


def test_landing_page():
    response = Client().get("/")
    assert response.status_code == 200
    assert b"Parsec server is running!" in response.content


@pytest.mark.parametrize("name", ["base.css", "favicon.ico", "parsec.png", "parsec-vert.png"])
def test_static_files(name: str):
    response = Client().get(f"/static/{name}")
    assert response.status_code == 200
    assert b"".join(response.streaming_content)


def test_unknown_path_is_an_html_404():
    response = Client().get("/no/such/page")
    assert response.status_code == 404
    assert b"<html" in response.content


def test_websocket_route_without_upgrade_is_400():
    assert Client().get("/ws").status_code == 400


def test_redirect_to_parsec_url(parsec_settings):
    parsec_settings(backend_addr=BackendAddr.parse("parsec://localhost:6820"))
    response = Client().get("/redirect/MyOrg?action=claim_user&token=abc&no_ssl=false")
    assert response.status_code == 302
    assert response["Location"] == "parsec://localhost:6820/MyOrg?action=claim_user&token=abc"


def test_redirect_keeps_no_ssl_of_the_server_address(parsec_settings):
    parsec_settings(backend_addr=BackendAddr.parse("parsec://example.com:6777?no_ssl=true"))
    response = Client().get("/redirect/My%20Org?action=claim_device&token=abc")
    assert response["Location"] == "parsec://example.com:6777/My%20Org?no_ssl=true&action=claim_device&token=abc"


def test_redirect_without_backend_address_is_501(parsec_settings):
    parsec_settings(backend_addr=None)
    assert Client().get("/redirect/MyOrg?action=claim_user").status_code == 501
