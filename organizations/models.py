"""Organizations, their users and devices.

Certificates are stored verbatim (clients compare them byte for byte); the decoded fields the
server's rules need are kept beside them.
"""
from __future__ import annotations

from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Lower
from django.utils.translation import gettext_lazy as _


class Profile(models.TextChoices):
    ADMIN = "ADMIN"
    STANDARD = "STANDARD"
    OUTSIDER = "OUTSIDER"


DEFAULT_MINIMUM_ARCHIVING_PERIOD = 2_592_000  # 30 days, the reference server's default


class Organization(models.Model):
    organization_id = models.CharField(max_length=32, unique=True)
    # 64 hex chars, or empty for an organization created by spontaneous bootstrap.
    bootstrap_token = models.CharField(max_length=64, blank=True)
    root_verify_key = models.BinaryField(null=True, blank=True)
    user_profile_outsider_allowed = models.BooleanField(default=True)
    active_users_limit = models.PositiveBigIntegerField(null=True, blank=True)
    minimum_archiving_period = models.PositiveBigIntegerField(default=DEFAULT_MINIMUM_ARCHIVING_PERIOD)
    is_expired = models.BooleanField(default=False)
    expired_on = models.DateTimeField(null=True, blank=True)
    created_on = models.DateTimeField()
    bootstrapped_on = models.DateTimeField(null=True, blank=True)
    sequester_authority_certificate = models.BinaryField(null=True, blank=True)
    sequester_authority_verify_key_der = models.BinaryField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="organization_bootstrapped_has_date",
                condition=Q(root_verify_key__isnull=True, bootstrapped_on__isnull=True)
                | Q(root_verify_key__isnull=False, bootstrapped_on__isnull=False),
            ),
            models.CheckConstraint(
                name="organization_sequester_key_with_certificate",
                condition=Q(sequester_authority_certificate__isnull=True, sequester_authority_verify_key_der__isnull=True)
                | Q(sequester_authority_certificate__isnull=False, sequester_authority_verify_key_der__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return self.organization_id

    @property
    def is_bootstrapped(self) -> bool:
        return self.root_verify_key is not None


class User(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="users")
    user_id = models.CharField(max_length=32)
    # The human handle; both NULL for legacy non-human users.
    human_email = models.CharField(max_length=254, null=True, blank=True)
    human_label = models.CharField(max_length=254, null=True, blank=True)
    profile = models.CharField(max_length=8, choices=Profile.choices)
    user_certificate = models.BinaryField()
    redacted_user_certificate = models.BinaryField()
    # NULL = signed by the organization's root key (bootstrap).
    user_certifier = models.ForeignKey(
        "Device", null=True, blank=True, on_delete=models.PROTECT, related_name="certified_users"
    )
    created_on = models.DateTimeField()
    revoked_on = models.DateTimeField(null=True, blank=True)
    revoked_user_certificate = models.BinaryField(null=True, blank=True)
    revoked_user_certifier = models.ForeignKey(
        "Device", null=True, blank=True, on_delete=models.PROTECT, related_name="revoked_users"
    )
    frozen = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "user_id"], name="user_unique_id"),
            # One active user per e-mail; revocation frees the e-mail for a new user.
            models.UniqueConstraint(
                fields=["organization", "human_email"],
                condition=Q(revoked_on__isnull=True, human_email__isnull=False),
                name="user_unique_active_email",
            ),
            models.CheckConstraint(name="user_profile_known", condition=Q(profile__in=Profile.values)),
            models.CheckConstraint(
                name="user_human_handle_complete",
                condition=Q(human_email__isnull=True, human_label__isnull=True)
                | Q(human_email__isnull=False, human_label__isnull=False),
            ),
            models.CheckConstraint(
                name="user_revocation_complete",
                condition=Q(revoked_on__isnull=True, revoked_user_certificate__isnull=True)
                | Q(revoked_on__isnull=False, revoked_user_certificate__isnull=False),
            ),
        ]
        indexes = [
            models.Index(fields=["organization", "human_email"], name="user_email_idx"),
            # human_find's order (label case-insensitively, NULLs last, then id): a page is the next `per_page`
            # entries of this index instead of a sort of the whole organization. Both PostgreSQL and SQLite
            # read an ascending index for `ASC NULLS LAST` (SQLite walks the non-NULL part, then the NULLs).
            models.Index("organization", Lower("human_label"), "user_id", "id", name="user_find_order_idx"),
            # The users whose revocation is dated ahead of now (a few seconds at most, the ballpark), which
            # human_find's `omit_revoked` total takes back from the revoked count (OrganizationUserCounts).
            models.Index(
                fields=["organization", "revoked_on"], name="user_revoked_on_idx", condition=Q(revoked_on__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return self.user_id if not self.human_label else f"{self.human_label} <{self.human_email}>"


class OrganizationUserCounts(models.Model):
    """How many users an organization has, for human_find's `total` without a query (docs/protocol.md#human-find).

    Written by the database only: triggers on the user table (migration 0004) keep it exact on every insert,
    revocation and delete, whoever writes the rows (the services, the bulk loader's COPY, tests' factories). A
    page's total then costs one row read, not a count of the organization's users. Revoked = `revoked_on` set,
    even dated ahead; human_find takes those dated after its `now` back out (`user_revoked_on_idx`).
    """

    organization = models.OneToOneField(
        Organization, primary_key=True, on_delete=models.CASCADE, related_name="user_counts"
    )
    users = models.PositiveBigIntegerField(default=0)
    human_users = models.PositiveBigIntegerField(default=0)
    revoked_users = models.PositiveBigIntegerField(default=0)
    revoked_human_users = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="user_counts_consistent",
                condition=Q(human_users__lte=F("users"), revoked_users__lte=F("users"))
                & Q(revoked_human_users__lte=F("human_users"))
                & Q(revoked_human_users__lte=F("revoked_users")),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.organization_id}: {self.users} users"


class Device(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="devices")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="devices")
    # Full DeviceID `<user_id>@<device_name>`, the form used on the wire.
    device_id = models.CharField(max_length=65)
    device_label = models.CharField(max_length=255, null=True, blank=True)
    # Decoded from the certificate: the handshake checks signatures with it on every connection.
    verify_key = models.BinaryField()
    device_certificate = models.BinaryField()
    redacted_device_certificate = models.BinaryField()
    device_certifier = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="certified_devices"
    )
    created_on = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "device_id"], name="device_unique_id"),
        ]

    def __str__(self) -> str:
        return self.device_id


class AuditEntry(models.Model):
    """One change made by an operator (web console, administration API, management commands): who, what, when.

    Kept apart from the organization's rows (no foreign key): the trail of an erased organization stays.
    """

    class Action(models.TextChoices):
        ORGANIZATION_CREATED = "organization_created", _("Organization created")
        ORGANIZATION_PATCHED = "organization_patched", _("Organization changed")
        ORGANIZATION_EXPIRED = "organization_expired", _("Organization expired")
        ORGANIZATION_ERASED = "organization_erased", _("Organization erased")
        USER_FROZEN = "user_frozen", _("User frozen")
        USER_UNFROZEN = "user_unfrozen", _("User unfrozen")
        INVITATION_CANCELLED = "invitation_cancelled", _("Invitation cancelled")

    timestamp = models.DateTimeField(_("when"), db_index=True)
    # "administration token", "console: <username>", "manage.py <command>"
    actor = models.CharField(_("who"), max_length=200)
    action = models.CharField(_("action"), max_length=32, choices=Action.choices)
    organization_id = models.CharField(_("organization"), max_length=32, db_index=True)
    # The user, invitation... the action was about; empty for the organization itself.
    target = models.CharField(_("target"), max_length=300, blank=True)
    # What changed, e.g. {"active_users_limit": 10}, or counts and bytes of an erase.
    details = models.JSONField(_("details"), default=dict, blank=True)

    class Meta:
        ordering = ["-timestamp", "-pk"]
        verbose_name = _("audit entry")
        verbose_name_plural = _("audit trail")

    def __str__(self) -> str:
        return f"{self.timestamp:%Y-%m-%d %H:%M:%S} {self.actor}: {self.action} {self.organization_id} {self.target}"
