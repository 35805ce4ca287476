"""Organizations for tests, made with the real bootstrap service; extra users as plain rows when only counts matter."""
from __future__ import annotations

import secrets
from datetime import datetime

from django.utils import timezone

from organizations.models import Device, Organization, User
from organizations.outcomes import to_reply
from organizations.services.organizations import organization_bootstrap
from tests.testkit.certs import TestDevice, bootstrap_material, user_creation_certificates


def bootstrapped_organization(
    organization_id: str = "CoolOrg", *, email: str = "alice@example.com", label: str = "Alice"
) -> tuple[Organization, TestDevice]:
    """An organization bootstrapped by `alice` (ADMIN, device `alice@dev1`)."""
    token = secrets.token_hex(32)
    Organization.objects.create(organization_id=organization_id, bootstrap_token=token, created_on=timezone.now())
    material = bootstrap_material(organization_id, "alice", "dev1", email, label)
    outcome = organization_bootstrap(organization_id=organization_id, bootstrap_token=token, **material.request_fields)
    assert to_reply(outcome) == {"status": "ok"}, outcome
    return Organization.objects.get(organization_id=organization_id), material.device


def add_user(
    organization: Organization,
    user_id: str,
    *,
    profile: str = "STANDARD",
    email: str | None = "",
    label: str | None = None,
    created_on: datetime | None = None,
    revoked_on: datetime | None = None,
    frozen: bool = False,
) -> User:
    """A user row with placeholder certificates (`email=None`: a legacy user without human handle)."""
    if email == "":
        email = f"{user_id}@example.com"
    return User.objects.create(
        organization=organization,
        user_id=user_id,
        human_email=email,
        human_label=None if email is None else (label or user_id.capitalize()),
        profile=profile,
        user_certificate=b"placeholder",
        redacted_user_certificate=b"placeholder",
        created_on=created_on or timezone.now(),
        revoked_on=revoked_on,
        revoked_user_certificate=None if revoked_on is None else b"placeholder",
        frozen=frozen,
    )


def add_device_user(author: TestDevice, user_id: str, *, profile: str = "STANDARD") -> TestDevice:
    """A user with one device signed by `author`, able to open an authenticated session."""
    device = TestDevice.generate(
        author.organization_id, user_id, "dev1", profile=profile, root_signing_key=author.root_signing_key
    )
    certificates = user_creation_certificates(author, device)
    organization = Organization.objects.get(organization_id=author.organization_id)
    certifier = Device.objects.get(organization=organization, device_id=author.device_id)
    user = User.objects.create(
        organization=organization,
        user_id=user_id,
        human_email=device.human_handle[0] if device.human_handle else None,
        human_label=device.human_handle[1] if device.human_handle else None,
        profile=profile,
        user_certificate=certificates["user_certificate"],
        redacted_user_certificate=certificates["redacted_user_certificate"],
        user_certifier=certifier,
        created_on=timezone.now(),
    )
    Device.objects.create(
        organization=organization,
        user=user,
        device_id=device.device_id,
        device_label=device.device_label,
        verify_key=device.verify_key,
        device_certificate=certificates["device_certificate"],
        redacted_device_certificate=certificates["redacted_device_certificate"],
        device_certifier=certifier,
        created_on=timezone.now(),
    )
    return device
