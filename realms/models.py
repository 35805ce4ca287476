"""Realms (workspaces and user manifests): roles, archiving, vlobs, checkpoints and messages.

Role and archiving certificates are append-only histories; the current state is the latest row.
Rows that must never exist twice are refused by the database (unique constraints), so concurrent
writers lose with an IntegrityError instead of corrupting a sequence.
"""
from __future__ import annotations

from django.db import models
from django.db.models import Q

from organizations.models import Device, Organization, User


class Role(models.TextChoices):
    OWNER = "OWNER"
    MANAGER = "MANAGER"
    CONTRIBUTOR = "CONTRIBUTOR"
    READER = "READER"


class MaintenanceType(models.TextChoices):
    REENCRYPTION = "REENCRYPTION"
    GARBAGE_COLLECTION = "GARBAGE_COLLECTION"


class ArchivingConfiguration(models.TextChoices):
    AVAILABLE = "AVAILABLE"
    ARCHIVED = "ARCHIVED"
    DELETION_PLANNED = "DELETION_PLANNED"


class Realm(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="realms")
    realm_id = models.UUIDField()
    encryption_revision = models.PositiveIntegerField(default=1)
    maintenance_type = models.CharField(max_length=24, choices=MaintenanceType.choices, null=True, blank=True)
    maintenance_started_on = models.DateTimeField(null=True, blank=True)
    maintenance_started_by = models.ForeignKey(
        Device, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Number of vlob writes so far; each write takes the next value (dense, per realm).
    checkpoint = models.PositiveBigIntegerField(default=0)
    # Timestamp of the realm's first role certificate (stats count realms by it).
    created_on = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "realm_id"], name="realm_unique_id"),
            models.CheckConstraint(
                name="realm_maintenance_complete",
                condition=Q(maintenance_type__isnull=True, maintenance_started_on__isnull=True)
                | Q(maintenance_type__isnull=False, maintenance_started_on__isnull=False),
            ),
            models.CheckConstraint(name="realm_revision_positive", condition=Q(encryption_revision__gte=1)),
        ]

    def __str__(self) -> str:
        return self.realm_id.hex


class RealmUserRole(models.Model):
    """One accepted role certificate; a user's current role is its latest row (role NULL = removed)."""

    realm = models.ForeignKey(Realm, on_delete=models.CASCADE, related_name="roles")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="realm_roles")
    role = models.CharField(max_length=12, choices=Role.choices, null=True, blank=True)
    certificate = models.BinaryField()
    certified_by = models.ForeignKey(Device, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    certified_on = models.DateTimeField()

    class Meta:
        constraints = [
            # Certificate timestamps of one (realm, user) are strictly increasing: never equal.
            models.UniqueConstraint(fields=["realm", "user", "certified_on"], name="realm_role_unique_timestamp"),
        ]
        indexes = [models.Index(fields=["user", "realm"], name="realm_role_user_idx")]


class RealmArchiving(models.Model):
    realm = models.ForeignKey(Realm, on_delete=models.CASCADE, related_name="archivings")
    configuration = models.CharField(max_length=16, choices=ArchivingConfiguration.choices)
    deletion_date = models.DateTimeField(null=True, blank=True)
    certificate = models.BinaryField()
    certified_by = models.ForeignKey(Device, on_delete=models.PROTECT, related_name="+")
    certified_on = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["realm", "certified_on"], name="realm_archiving_unique_timestamp"),
            models.CheckConstraint(
                name="realm_archiving_deletion_date",
                condition=Q(configuration=ArchivingConfiguration.DELETION_PLANNED, deletion_date__isnull=False)
                | (~Q(configuration=ArchivingConfiguration.DELETION_PLANNED) & Q(deletion_date__isnull=True)),
            ),
        ]


class RealmUserChange(models.Model):
    """Latest timestamps a user left in a realm, for the causality checks (`require_greater_timestamp`)."""

    realm = models.ForeignKey(Realm, on_delete=models.CASCADE, related_name="user_changes")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    last_role_change = models.DateTimeField(null=True, blank=True)
    last_vlob_update = models.DateTimeField(null=True, blank=True)
    last_archiving_change = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["realm", "user"], name="realm_user_change_unique")]


class VlobAtom(models.Model):
    """One version of one vlob in one encryption revision (re-encryption adds a copy per version)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    realm = models.ForeignKey(Realm, on_delete=models.CASCADE, related_name="vlob_atoms")
    vlob_id = models.UUIDField()
    version = models.PositiveIntegerField()
    encryption_revision = models.PositiveIntegerField()
    blob = models.BinaryField()
    size = models.PositiveIntegerField()
    author = models.ForeignKey(Device, on_delete=models.PROTECT, related_name="+")
    # The client's timestamp of the version (signed inside the blob), echoed to the microsecond.
    created_on = models.DateTimeField()

    class Meta:
        constraints = [
            # Two writers of the same version: the database lets exactly one in.
            models.UniqueConstraint(
                fields=["organization", "vlob_id", "encryption_revision", "version"], name="vlob_atom_unique_version"
            ),
            models.CheckConstraint(name="vlob_atom_version_positive", condition=Q(version__gte=1)),
        ]
        indexes = [models.Index(fields=["realm", "encryption_revision"], name="vlob_atom_realm_revision_idx")]


class RealmVlobUpdate(models.Model):
    """The realm's change log: checkpoint `index` was the write of (vlob_id, version)."""

    realm = models.ForeignKey(Realm, on_delete=models.CASCADE, related_name="vlob_updates")
    index = models.PositiveBigIntegerField()
    vlob_id = models.UUIDField()
    version = models.PositiveIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["realm", "index"], name="realm_vlob_update_unique_index")]


class Message(models.Model):
    """A message in a user's inbox (shared by all its devices), in arrival order."""

    recipient = models.ForeignKey(User, on_delete=models.CASCADE, related_name="messages")
    # 1-based rank in the recipient's inbox.
    index = models.PositiveIntegerField()
    sender = models.ForeignKey(Device, on_delete=models.PROTECT, related_name="+")
    timestamp = models.DateTimeField()
    body = models.BinaryField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["recipient", "index"], name="message_unique_index")]
