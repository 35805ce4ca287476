"""Invitations: a token that lets a claimer open an invited session, and its SAS conduit(s).

Also the shamir recovery setups (docs/protocol.md#shamir-recovery), which SHAMIR_RECOVERY invitations are built on.
"""
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


class ShamirRecoverySetup(models.Model):
    """A user's shamir setup; replaced setups stay, `is_active` marks the current one."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="shamir_setups")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="shamir_setups")
    brief_certificate = models.BinaryField()
    reveal_token = models.UUIDField()
    threshold = models.PositiveIntegerField()
    shares = models.PositiveIntegerField()
    ciphered_data = models.BinaryField()
    created_on = models.DateTimeField()
    is_active = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "reveal_token"], name="shamir_setup_unique_reveal_token"),
            # A user has at most one active setup (docs/protocol.md#shamir-recovery).
            models.UniqueConstraint(fields=["user"], condition=Q(is_active=True), name="shamir_setup_one_active"),
        ]

    def __str__(self) -> str:
        return f"shamir setup of {self.user_id} ({self.threshold}/{self.shares})"


class ShamirRecoveryShare(models.Model):
    setup = models.ForeignKey(ShamirRecoverySetup, on_delete=models.CASCADE, related_name="recipient_shares")
    recipient = models.ForeignKey(User, on_delete=models.CASCADE, related_name="shamir_shares")
    share_certificate = models.BinaryField()
    shares = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["setup", "recipient"], name="shamir_share_unique_recipient"),
        ]


class Invitation(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="invitations")
    token = models.UUIDField()
    type = models.CharField(max_length=16, choices=InvitationType.choices)
    greeter = models.ForeignKey(User, on_delete=models.CASCADE, related_name="greeted_invitations")
    # 255 as the reference's column: what it stores, we store.
    claimer_email = models.CharField(max_length=255, null=True, blank=True)
    # SHAMIR_RECOVERY only; the claimer is the setup's user.
    shamir_recovery = models.ForeignKey(
        ShamirRecoverySetup, null=True, blank=True, on_delete=models.CASCADE, related_name="invitations"
    )
    created_on = models.DateTimeField()
    deleted_on = models.DateTimeField(null=True, blank=True)
    deleted_reason = models.CharField(max_length=16, choices=DeletedReason.choices, null=True, blank=True)
    # The conduit of USER and DEVICE invitations (SHAMIR_RECOVERY ones use ShamirRecoveryConduit).
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
                name="invitation_shamir_has_setup",
                condition=~Q(type=InvitationType.SHAMIR_RECOVERY) | Q(shamir_recovery__isnull=False),
            ),
            models.CheckConstraint(
                name="invitation_deletion_complete",
                condition=Q(deleted_on__isnull=True, deleted_reason__isnull=True)
                | Q(deleted_on__isnull=False, deleted_reason__isnull=False),
            ),
            # `invite_new` hands back the pending invitation instead of creating a second one: two
            # concurrent calls cannot both insert.
            models.UniqueConstraint(
                fields=["greeter", "claimer_email"],
                condition=Q(type=InvitationType.USER, deleted_on__isnull=True),
                name="invitation_one_pending_user_per_email",
            ),
            models.UniqueConstraint(
                fields=["greeter"],
                condition=Q(type=InvitationType.DEVICE, deleted_on__isnull=True),
                name="invitation_one_pending_device",
            ),
            models.UniqueConstraint(
                fields=["shamir_recovery"],
                condition=Q(type=InvitationType.SHAMIR_RECOVERY, deleted_on__isnull=True),
                name="invitation_one_pending_shamir",
            ),
        ]

    def __str__(self) -> str:
        # Not the token: whoever holds it may claim the invitation.
        return f"{self.type} invitation #{self.pk}"


class ShamirRecoveryConduit(models.Model):
    """One conduit per recipient of a SHAMIR_RECOVERY invitation: every recipient may greet."""

    invitation = models.ForeignKey(Invitation, on_delete=models.CASCADE, related_name="shamir_conduits")
    greeter = models.ForeignKey(User, on_delete=models.CASCADE, related_name="shamir_conduits")
    conduit_state = models.CharField(max_length=32, choices=ConduitState.choices, default=ConduitState.WAIT_PEERS)
    conduit_greeter_payload = models.BinaryField(null=True, blank=True)
    conduit_claimer_payload = models.BinaryField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["invitation", "greeter"], name="shamir_conduit_unique_greeter"),
        ]


class ClaimerSession(models.Model):
    """One row per open invited websocket session: READY while the invitation has one, else IDLE.

    The reference keeps this per process; here greeters and claimers may be served by different
    processes, so it lives in the database every process reads. A row per session (keyed by its
    unique channel name) rather than a counter: closing twice deletes nothing the second time, so
    the count can never drift below the truth. A process killed without running its close hooks
    leaves its rows behind (the invitation then shows READY until deleted), the same kind of
    staleness the reference accepts when one of its processes dies.
    """

    invitation = models.ForeignKey(Invitation, on_delete=models.CASCADE, related_name="claimer_sessions")
    channel_name = models.CharField(max_length=255, unique=True)
    opened_on = models.DateTimeField()

    def __str__(self) -> str:
        return f"claimer of {self.invitation} since {self.opened_on:%Y-%m-%d %H:%M:%S}"
