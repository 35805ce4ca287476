"""Sequester services in the admin console: listed and shown, never editable."""
from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync

from sequester import certificates
from sequester.models import ServiceType
from tests.conftest import bootstrap_organization
from tests.sequester.helpers import add_service, make_sequestered

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def services():
    world = async_to_sync(bootstrap_organization)()
    async_to_sync(make_sequestered)(world)
    storage = async_to_sync(add_service)(world, label="Escrow")
    hook = async_to_sync(add_service)(world, label="Antivirus", service_type=ServiceType.WEBHOOK,
                                      webhook_url="https://av.example.com/hook", disabled=True)
    return storage, hook


def test_list_and_detail(admin_client, services):
    storage, hook = services
    content = admin_client.get("/admin/sequester/sequesterservice/").content.decode()
    assert "Escrow" in content and "Antivirus" in content and storage.service_id.hex in content
    response = admin_client.get(f"/admin/sequester/sequesterservice/{hook.pk}/change/")
    assert response.status_code == 200
    content = response.content.decode()
    assert "https://av.example.com/hook" in content
    assert certificates.PEM_HEADER in content
    assert certificates.dump_pem(bytes(hook.service_certificate)).splitlines()[1] in content


def test_read_only(admin_client, services):
    storage, _hook = services
    assert admin_client.get("/admin/sequester/sequesterservice/add/").status_code == 403
    response = admin_client.post(f"/admin/sequester/sequesterservice/{storage.pk}/change/",
                                 {"service_label": "Renamed"})
    assert response.status_code == 403
    response = admin_client.post(f"/admin/sequester/sequesterservice/{storage.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    storage.refresh_from_db()
    assert storage.service_label == "Escrow"
