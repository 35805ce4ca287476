"""The Django admin console: invitations, read-only (they only change through the protocol).

The token is never shown: whoever holds it may claim the invitation.
"""
from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest

from invites.models import ClaimerSession, Invitation, InvitationType


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "type",
        "status",
        "organization",
        "greeter",
        "claimer",
        "created_on",
        "deleted_on",
        "deleted_reason",
    )
    list_filter = ("type", "deleted_reason", "organization")
    list_select_related = ("organization", "greeter", "shamir_recovery__user")
    search_fields = ("claimer_email", "greeter__user_id", "greeter__human_email", "greeter__human_label")
    ordering = ("-created_on",)
    fields = (
        "organization",
        "type",
        "status",
        "greeter",
        "claimer",
        "created_on",
        "deleted_on",
        "deleted_reason",
        "conduit_state",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Invitation]:
        sessions = ClaimerSession.objects.filter(invitation=OuterRef("pk"))
        return super().get_queryset(request).annotate(claimer_connected=Exists(sessions))

    @admin.display(description="Status")
    def status(self, invitation: Invitation) -> str:
        # As greeters see it (commands.md §4.1).
        if invitation.deleted_on is not None:
            return "DELETED"
        return "READY" if invitation.claimer_connected else "IDLE"  # type: ignore[attr-defined]

    @admin.display(description="Claimer")
    def claimer(self, invitation: Invitation) -> str:
        if invitation.type == InvitationType.USER:
            return invitation.claimer_email or ""
        if invitation.type == InvitationType.SHAMIR_RECOVERY and invitation.shamir_recovery is not None:
            return str(invitation.shamir_recovery.user)
        return str(invitation.greeter)  # DEVICE: a new device of the greeter itself

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
