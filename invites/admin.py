"""The Django admin console: invitations, read-only (they only change through the protocol).

The token is never shown: whoever holds it may claim the invitation.
"""
from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext, gettext_lazy as _

from invites.services import invitations as services
from invites.models import ClaimerSession, Invitation, InvitationType
from organizations import audit


class PendingFilter(admin.SimpleListFilter):
    title = _("pending")
    parameter_name = "pending"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", gettext("Yes")), ("no", gettext("No"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Invitation]) -> QuerySet[Invitation]:
        if self.value() in ("yes", "no"):
            return queryset.filter(deleted_on__isnull=self.value() == "yes")
        return queryset


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
    list_filter = (PendingFilter, "type", "deleted_reason", "organization")
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

    actions = ["cancel_invitations"]

    @admin.action(
        description=_("Cancel the selected invitations (their claimers are disconnected)"), permissions=["cancel"]
    )
    def cancel_invitations(self, request: HttpRequest, queryset: QuerySet[Invitation]) -> None:
        cancelled = 0
        for invitation in queryset.select_related("organization"):
            done = services.invitation_cancel(invitation_pk=invitation.pk)
            if done is None:
                continue
            cancelled += 1
            audit.record(
                actor=audit.console_actor(request), action=audit.Action.INVITATION_CANCELLED,
                organization_id=invitation.organization.organization_id,
                target=f"{invitation.type} {self.claimer(invitation)}".strip(),
                details={"invitation": invitation.pk},
            )
        skipped = len(queryset) - cancelled
        self.message_user(request, gettext("%(count)d invitation(s) cancelled.") % {"count": cancelled})
        if skipped:
            self.message_user(request, gettext("%(count)d invitation(s) were already deleted.") % {"count": skipped},
                              messages.WARNING)

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        # Cancelling goes through the protocol's own deletion, not a row edit: the view permission is enough.
        return self.has_view_permission(request)

    @admin.display(description=_("Status"))
    def status(self, invitation: Invitation) -> str:
        # As greeters see it (docs/protocol.md#invitation-model).
        if invitation.deleted_on is not None:
            return "DELETED"
        return "READY" if invitation.claimer_connected else "IDLE"  # type: ignore[attr-defined]

    @admin.display(description=_("Claimer"))
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
