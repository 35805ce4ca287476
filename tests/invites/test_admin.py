"""The Django admin console of invitations: a read-only list."""
from __future__ import annotations

import uuid

import pytest
from django.utils import timezone

from invites.models import ClaimerSession, Invitation
from organizations.models import Organization, User


@pytest.fixture
def invitations(db) -> dict[str, Invitation]:
    now = timezone.now()
    organization = Organization.objects.create(organization_id="CoolOrg", created_on=now)
    alice = User.objects.create(
        organization=organization, user_id="alice", human_email="alice@example.com", human_label="Alice",
        profile="ADMIN", user_certificate=b"c", redacted_user_certificate=b"r", created_on=now,
    )
    rows = {
        "idle": Invitation.objects.create(organization=organization, token=uuid.uuid4(), type="USER", greeter=alice,
                                          claimer_email="zack@example.com", created_on=now),
        "ready": Invitation.objects.create(organization=organization, token=uuid.uuid4(), type="DEVICE", greeter=alice,
                                           created_on=now),
        "deleted": Invitation.objects.create(organization=organization, token=uuid.uuid4(), type="USER", greeter=alice,
                                             claimer_email="yann@example.com", created_on=now, deleted_on=now,
                                             deleted_reason="CANCELLED"),
    }
    ClaimerSession.objects.create(invitation=rows["ready"], channel_name="specific.test!1", opened_on=now)
    return rows


def test_list(admin_client, invitations):
    response = admin_client.get("/admin/invites/invitation/")
    assert response.status_code == 200
    content = response.content.decode()
    for text in ("zack@example.com", "yann@example.com", "IDLE", "READY", "DELETED", "CANCELLED", "Alice"):
        assert text in content
    # Tokens are never shown: they let anyone claim.
    for invitation in invitations.values():
        assert invitation.token.hex not in content and str(invitation.token) not in content


def test_detail_is_read_only(admin_client, invitations):
    invitation = invitations["idle"]
    response = admin_client.get(f"/admin/invites/invitation/{invitation.pk}/change/")
    assert response.status_code == 200
    content = response.content.decode()
    assert "zack@example.com" in content and invitation.token.hex not in content
    assert admin_client.post(f"/admin/invites/invitation/{invitation.pk}/change/", {}).status_code == 403
    assert admin_client.get("/admin/invites/invitation/add/").status_code == 403
    assert admin_client.post(f"/admin/invites/invitation/{invitation.pk}/delete/", {"post": "yes"}).status_code == 403
