"""The Django admin console of PKI enrollments: a read-only list, without certificates or payloads."""
from __future__ import annotations

import uuid

import pytest
from django.utils import timezone

from organizations.models import Organization
from pki.models import PkiEnrollment

CERTIFICATE = b"0\x82 DER certificate of zack"


@pytest.fixture
def enrollment(db) -> PkiEnrollment:
    now = timezone.now()
    organization = Organization.objects.create(organization_id="CoolOrg", created_on=now)
    return PkiEnrollment.objects.create(
        organization=organization, enrollment_id=uuid.uuid4(), submitter_der_x509_certificate=CERTIFICATE,
        submitter_der_x509_certificate_sha1=b"\x00" * 20, submitter_der_x509_certificate_email="zack@example.com",
        submit_payload_signature=b"signature", submit_payload=b"payload", submitted_on=now,
    )


def test_list(admin_client, enrollment):
    response = admin_client.get("/admin/pki/pkienrollment/")
    assert response.status_code == 200
    content = response.content.decode()
    assert "SUBMITTED" in content and "CoolOrg" in content and str(enrollment.enrollment_id) in content


def test_detail_is_read_only(admin_client, enrollment):
    url = f"/admin/pki/pkienrollment/{enrollment.pk}/change/"
    response = admin_client.get(url)
    assert response.status_code == 200
    assert "zack@example.com" in response.content.decode()
    assert "DER certificate" not in response.content.decode()
    assert admin_client.post(url, {}).status_code == 403
    assert admin_client.get("/admin/pki/pkienrollment/add/").status_code == 403
    assert admin_client.post(f"/admin/pki/pkienrollment/{enrollment.pk}/delete/", {"post": "yes"}).status_code == 403


def test_state_constraint(db, enrollment):
    """The database refuses a state without its date."""
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        PkiEnrollment.objects.filter(pk=enrollment.pk).update(state="REJECTED")
