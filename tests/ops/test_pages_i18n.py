"""The landing page, `/redirect` and 404 pages in English and French, chosen by Accept-Language."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client

from parsec_site.addr import BackendAddr

LOCALE = Path(settings.BASE_DIR) / "locale"


@pytest.fixture(scope="module", autouse=True)
def compiled_messages():
    """scripts/setup.sh and the Dockerfile compile the catalogues; a fresh checkout may not have yet."""
    po = LOCALE / "fr/LC_MESSAGES/django.po"
    mo = po.with_suffix(".mo")
    if not mo.exists() or mo.stat().st_mtime < po.stat().st_mtime:
        call_command("compilemessages", locale=["fr"], verbosity=0)
        from django.utils.translation import trans_real

        trans_real._translations = {}  # forget catalogues loaded before the compilation


def test_landing_in_english_by_default():
    response = Client().get("/")
    assert b"Parsec server is running!" in response.content
    assert b'<html lang="en' in response.content


def test_landing_in_french():
    response = Client().get("/", HTTP_ACCEPT_LANGUAGE="fr-FR,fr;q=0.9,en;q=0.5")
    assert response.status_code == 200
    assert "Le serveur Parsec fonctionne !" in response.content.decode()
    assert b'<html lang="fr"' in response.content
    assert response["Content-Language"] == "fr"


def test_unknown_language_falls_back_to_english():
    assert b"Parsec server is running!" in Client().get("/", HTTP_ACCEPT_LANGUAGE="de").content


def test_redirect_page_in_french_keeps_the_302(parsec_settings):
    parsec_settings(backend_addr=BackendAddr.parse("parsec://localhost:6820"))
    response = Client().get("/redirect/MyOrg?action=claim_user&token=abc", HTTP_ACCEPT_LANGUAGE="fr")
    assert response.status_code == 302
    assert response["Location"] == "parsec://localhost:6820/MyOrg?action=claim_user&token=abc"
    body = response.content.decode()
    assert "Ouverture du client Parsec" in body
    assert 'href="parsec://localhost:6820/MyOrg?action=claim_user&amp;token=abc"' in body


def test_redirect_page_in_english(parsec_settings):
    parsec_settings(backend_addr=BackendAddr.parse("parsec://localhost:6820"))
    response = Client().get("/redirect/MyOrg?action=claim_user&token=abc")
    assert "Opening the Parsec client" in response.content.decode()


def test_404_in_french():
    response = Client().get("/nothing/here", HTTP_ACCEPT_LANGUAGE="fr")
    assert response.status_code == 404
    assert "Il n'y a rien à cette adresse." in response.content.decode()
