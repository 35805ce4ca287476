"""Invitations: a token that lets a claimer open an invited session, and its SAS conduit."""
from __future__ import annotations

from django.db import models
from django.db.models import Q

from organizations.models import Organization, User


class InvitationType(models.TextChoices):
    USER = "USER"
    DEVICE = "DEVICE"
    SHAMIR_RECOVERY = "SHAMIR_RECOVERY"


class DeletedReason(models.TextChoices):
    FINISHED = "FINISHED"
    CANCELLED = "CANCELLED"
    ROTTEN = "ROTTEN"


class ConduitState(models.TextChoices):
    WAIT_PEERS = "1_WAIT_PEERS"
    CLAIMER_HASHED_NONCE = "2_1_CLAIMER_HASHED_NONCE"
    GREETER_NONCE = "2_2_GREETER_NONCE"
    CLAIMER_NONCE = "2_3_CLAIMER_NONCE"
    CLAIMER_TRUST = "3_1_CLAIMER_TRUST"
    GREETER_TRUST = "3_2_GREETER_TRUST"
    COMMUNICATE = "4_COMMUNICATE"


class Invitation(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="invitations")
    token = models.UUIDField()
    type = models.CharField(max_length=16, choices=InvitationType.choices)
    greeter = models.ForeignKey(User, on_delete=models.CASCADE, related_name="greeted_invitations")
    claimer_email = models.CharField(max_length=254, null=True, blank=True)
    created_on = models.DateTimeField()
    deleted_on = models.DateTimeField(null=True, blank=True)
    deleted_reason = models.CharField(max_length=16, choices=DeletedReason.choices, null=True, blank=True)
    conduit_state = models.CharField(max_length=32, choices=ConduitState.choices, default=ConduitState.WAIT_PEERS)
    conduit_greeter_payload = models.BinaryField(null=True, blank=True)
    conduit_claimer_payload = models.BinaryField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "token"], name="invitation_unique_token"),
            models.CheckConstraint(name="invitation_type_known", condition=Q(type__in=InvitationType.values)),
            models.CheckConstraint(
                name="invitation_user_has_email",
                condition=~Q(type=InvitationType.USER) | Q(claimer_email__isnull=False),
            ),
            models.CheckConstraint(
                name="invitation_deletion_complete",
                condition=Q(deleted_on__isnull=True, deleted_reason__isnull=True)
                | Q(deleted_on__isnull=False, deleted_reason__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.token.hex}"
