"""The Django admin console for operators.

Organizations: created and updated through the same services as the administration API (so creating one
yields a bootstrap URL and expiring one closes its sessions). Users and devices: read-only, they only change
through signed certificates. Keys and certificates are never shown or editable.

The organization's figures that come from the apps built on this one (realms, data and metadata sizes,
pending invitations, sequester services) and the erase action are added by the site-level app, `server/admin.py`,
which registers its subclass of `OrganizationAdmin` in place of this one.
"""
from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import BigIntegerField, Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext, gettext_lazy as _

from organizations import audit
from organizations.services import organizations as services
from organizations.models import AuditEntry, Device, Organization, User
from organizations.outcomes import AdministrationError
from protocol import types

SETTINGS_FIELDS = ("is_expired", "user_profile_outsider_allowed", "active_users_limit", "minimum_archiving_period")
# The organization's page: its figures (read-only), then its settings.
DETAIL_FIELDS = (
    "organization_id",
    "bootstrapped",
    "bootstrap_url",
    "users_column",
    "users_total_column",
    "users_table",
    "device_count_column",
    "audit_trail",
    "created_on",
    "bootstrapped_on",
    "expired_on",
    "sequestered",
)
USERS_SHOWN = 50
CREATION_FIELDS = ("organization_id", "user_profile_outsider_allowed", "active_users_limit", "minimum_archiving_period")


def bootstrap_url_for(organization: Organization) -> str | None:
    backend_addr = settings.PARSEC.backend_addr
    if backend_addr is None or organization.is_bootstrapped:
        return None
    return services.organization_bootstrap_url(
        organization_id=organization.organization_id,
        bootstrap_token=organization.bootstrap_token,
        backend_addr=backend_addr,
    )


class OrganizationCreationForm(forms.ModelForm):
    class Meta:
        model = Organization
        fields = CREATION_FIELDS

    def clean_organization_id(self) -> str:
        try:
            organization_id = types.validate_organization_id(self.cleaned_data["organization_id"])
        except types.FieldError as exc:
            raise forms.ValidationError(str(exc)) from None
        if Organization.objects.filter(organization_id=organization_id, root_verify_key__isnull=False).exists():
            raise forms.ValidationError(_("This organization already exists and is bootstrapped."))
        return organization_id

    def validate_unique(self) -> None:
        # `organization_id` is the only unique field, and a not yet bootstrapped organization may be re-created
        # (new token), as with the administration API; `clean_organization_id` refuses bootstrapped ones.
        return None


def per_organization(queryset: QuerySet, value: Any) -> Coalesce:
    """A correlated subquery per organization row: several Count/Sum over joins would multiply each other."""
    rows = queryset.filter(organization=OuterRef("pk")).order_by().values("organization").annotate(value=value)
    return Coalesce(Subquery(rows.values("value"), output_field=BigIntegerField()), 0)


def with_figures(queryset: QuerySet[Organization]) -> QuerySet[Organization]:
    """Organizations annotated with the list's figures of this app, in a single query."""
    return queryset.annotate(
        active_users=per_organization(User.objects.filter(revoked_on__isnull=True), Count("pk")),
        users_total=per_organization(User.objects.all(), Count("pk")),
        device_count=per_organization(Device.objects.all(), Count("pk")),
    )


class BootstrappedFilter(admin.SimpleListFilter):
    title = _("bootstrapped")
    parameter_name = "bootstrapped"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", gettext("Yes")), ("no", gettext("No"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Organization]) -> QuerySet[Organization]:
        if self.value() in ("yes", "no"):
            return queryset.filter(root_verify_key__isnull=self.value() == "no")
        return queryset


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    # Any number of columns: server.admin's subclass adds the figures of the apps above this one.
    list_display: tuple[str, ...] = (
        "organization_id", "users_column", "device_count_column", "bootstrapped", "is_expired", "created_on"
    )
    detail_fields: tuple[str, ...] = DETAIL_FIELDS
    list_filter = (BootstrappedFilter, "is_expired", "user_profile_outsider_allowed", "created_on")
    # An organization by its id, or by the e-mail or name of one of its users.
    search_fields = ("organization_id", "users__human_email", "users__human_label")
    search_help_text = _("Organization id, or the e-mail or name of one of its users")
    date_hierarchy = "created_on"
    ordering = ("organization_id",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Organization]:
        return with_figures(super().get_queryset(request))

    @admin.display(boolean=True, description=_("Bootstrapped?"))
    def bootstrapped(self, organization: Organization) -> bool:
        return organization.is_bootstrapped

    @admin.display(description=_("Users (active / limit)"), ordering="active_users")
    def users_column(self, organization: Organization) -> str:
        limit = organization.active_users_limit
        shown_limit = "∞" if limit is None else str(limit)
        return f"{organization.active_users} / {shown_limit}"  # type: ignore[attr-defined]

    @admin.display(description=_("Devices"), ordering="device_count")
    def device_count_column(self, organization: Organization) -> int:
        return organization.device_count  # type: ignore[attr-defined]

    actions = ["expire_organizations"]

    @admin.action(description=_("Expire the selected organizations (closes their sessions)"),
                  permissions=["change"])
    def expire_organizations(self, request: HttpRequest, queryset: QuerySet[Organization]) -> None:
        for organization in queryset.filter(is_expired=False):
            outcome = services.organization_update(organization_id=organization.organization_id, is_expired=True)
            if isinstance(outcome, AdministrationError):  # erased meanwhile
                continue
            audit.record(actor=audit.console_actor(request), action=audit.Action.ORGANIZATION_EXPIRED,
                         organization_id=organization.organization_id, details={"is_expired": True})
            self.message_user(request, gettext("%(organization)s: expired") % {"organization": organization})

    @admin.display(description=_("Users"))
    def users_total_column(self, organization: Organization) -> str:
        url = reverse("admin:organizations_user_changelist") + f"?organization__id__exact={organization.pk}"
        return format_html(
            '{} ({} {}) &mdash; <a href="{}">{}</a>', organization.users_total,  # type: ignore[attr-defined]
            organization.users_total - organization.active_users,  # type: ignore[attr-defined]
            gettext("revoked"), url, gettext("list, freeze, unfreeze"),
        )

    @admin.display(description=_("Its users"))
    def users_table(self, organization: Organization) -> str:
        """The first users, read-only (they change through certificates; freezing is on the users list)."""
        users = list(User.objects.filter(organization=organization).order_by("created_on", "pk")[:USERS_SHOWN + 1])
        rows = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (user.human_label or "-", user.human_email or "-", user.profile,
                 gettext("revoked") if user.revoked_on else gettext("active"),
                 gettext("frozen") if user.frozen else "")
                for user in users[:USERS_SHOWN]
            ),
        )
        more = gettext("… and more, see the users list") if len(users) > USERS_SHOWN else ""
        return format_html('<table id="organization-users"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th>'
                           "<th></th></tr></thead><tbody>{}</tbody></table>{}",
                           gettext("Name"), gettext("E-mail"), gettext("Profile"), gettext("Status"), rows, more)

    @admin.display(description=_("Audit trail"))
    def audit_trail(self, organization: Organization) -> str:
        entries = AuditEntry.objects.filter(organization_id=organization.organization_id)
        url = reverse("admin:organizations_auditentry_changelist") + f"?q={organization.organization_id}"
        latest = entries.first()
        summary = "-" if latest is None else f"{latest.timestamp:%Y-%m-%d %H:%M} {latest.get_action_display()}"
        return format_html('{} &mdash; <a href="{}">{}</a>', summary, url,
                           gettext("%(count)d change(s)") % {"count": entries.count()})

    @admin.display(boolean=True, description=_("Sequestered?"))
    def sequestered(self, organization: Organization) -> bool:
        return organization.sequester_authority_certificate is not None

    @admin.display(description=_("Bootstrap URL"))
    def bootstrap_url(self, organization: Organization) -> str:
        if organization.is_bootstrapped:
            return gettext("Already bootstrapped")
        url = bootstrap_url_for(organization)
        if url is None:
            return gettext("Unknown: the server has no backend address (set PARSEC_BACKEND_ADDR)")
        # The copy button needs no script file: the Clipboard API, else the selected text and execCommand.
        return format_html(
            '<input type="text" id="bootstrap-url" readonly value="{}" size="90" onclick="this.select()"> '
            '<button type="button" class="button" id="copy-bootstrap-url" data-copied="{}" onclick="'
            "var f=document.getElementById('bootstrap-url');f.select();"
            "if(navigator.clipboard&&window.isSecureContext){{navigator.clipboard.writeText(f.value)"
            ".catch(function(){{document.execCommand('copy');}});}}"
            "else{{document.execCommand('copy');}}this.textContent=this.dataset.copied;"
            '">{}</button>',
            url, gettext("Copied"), gettext("Copy"),
        )

    def get_form(self, request: HttpRequest, obj: Organization | None = None, change: bool = False, **kwargs: Any):
        if obj is None:
            kwargs["form"] = OrganizationCreationForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Organization | None = None) -> tuple[str, ...]:
        if obj is None:
            return CREATION_FIELDS
        return (*self.detail_fields, *SETTINGS_FIELDS)

    def get_readonly_fields(self, request: HttpRequest, obj: Organization | None = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        return self.detail_fields

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        return {**services.new_organization_defaults(), **initial}

    def has_delete_permission(self, request: HttpRequest, obj: Organization | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Organization, form: forms.ModelForm, change: bool) -> None:
        if change:
            changed = {name: form.cleaned_data[name] for name in form.changed_data if name in SETTINGS_FIELDS}
            outcome = services.organization_update(organization_id=obj.organization_id, **changed)
            if isinstance(outcome, AdministrationError):
                raise Organization.DoesNotExist(obj.organization_id)
            if changed:
                audit.record(actor=audit.console_actor(request), action=audit.organization_patch_action(changed),
                             organization_id=obj.organization_id, details=changed)
            return

        created = services.organization_create(
            organization_id=form.cleaned_data["organization_id"],
            user_profile_outsider_allowed=form.cleaned_data["user_profile_outsider_allowed"],
            active_users_limit=form.cleaned_data["active_users_limit"],
            minimum_archiving_period=form.cleaned_data["minimum_archiving_period"],
        )
        if isinstance(created, AdministrationError):
            # Bootstrapped between the form's check and now.
            existing = Organization.objects.get(organization_id=form.cleaned_data["organization_id"])
            obj.pk = existing.pk
            messages.error(request, gettext("This organization was bootstrapped meanwhile; nothing was changed."))
            return
        audit.record(
            actor=audit.console_actor(request), action=audit.Action.ORGANIZATION_CREATED,
            organization_id=created.organization.organization_id,
            details={name: form.cleaned_data[name] for name in CREATION_FIELDS if name != "organization_id"},
        )
        obj.pk = created.organization.pk
        obj.bootstrap_token = created.bootstrap_token
        obj.created_on = created.organization.created_on
        url = bootstrap_url_for(created.organization)
        if url is None:
            messages.warning(
                request,
                gettext(
                    "Organization created, but its bootstrap URL cannot be built: the server has no backend address "
                    "(set PARSEC_BACKEND_ADDR)."
                ),
            )
        else:
            messages.success(
                request,
                gettext("Bootstrap URL of %(organization)s: %(url)s")
                % {"organization": created.organization.organization_id, "url": url},
            )


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows that only change through the protocol (signed certificates): view them, never edit them."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(User)
class UserAdmin(ReadOnlyAdmin):
    list_display = (
        "user_id",
        "organization",
        "human_label",
        "human_email",
        "profile",
        "revoked",
        "frozen",
        "created_on",
        "user_certifier",
    )
    list_filter = ("profile", "frozen", "organization")
    list_select_related = ("organization", "user_certifier")
    search_fields = ("user_id", "human_email", "human_label")
    fields = (
        "organization",
        "user_id",
        "human_label",
        "human_email",
        "profile",
        "created_on",
        "user_certifier",
        "revoked",
        "revoked_on",
        "revoked_user_certifier",
        "frozen",
    )
    readonly_fields = fields

    @admin.display(boolean=True, description=_("Revoked?"))
    def revoked(self, user: User) -> bool:
        return user.revoked_on is not None

    actions = ["freeze_users", "unfreeze_users"]

    def _set_frozen(self, request: HttpRequest, queryset: QuerySet[User], frozen: bool) -> None:
        # The administration API's freeze service: same rules, and the user's live sessions are closed.
        for user in queryset.select_related("organization"):
            outcome = services.user_freeze(
                organization_id=user.organization.organization_id, frozen=frozen, user_id=user.user_id
            )
            if isinstance(outcome, AdministrationError):
                message = (gettext("%(user)s: cannot be frozen (revoked, or without a human handle)") if frozen
                           else gettext("%(user)s: cannot be unfrozen (revoked, or without a human handle)"))
                self.message_user(request, message % {"user": user.user_id}, messages.WARNING)
            else:
                audit.record(
                    actor=audit.console_actor(request),
                    action=audit.Action.USER_FROZEN if frozen else audit.Action.USER_UNFROZEN,
                    organization_id=user.organization.organization_id,
                    target=f"{outcome.user_id} <{outcome.user_email}>",
                )
                message = gettext("%(user)s: frozen") if frozen else gettext("%(user)s: unfrozen")
                self.message_user(request, message % {"user": f"{outcome.user_name} <{outcome.user_email}>"})

    @admin.action(description=_("Freeze the selected users (closes their sessions)"))
    def freeze_users(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        self._set_frozen(request, queryset, True)

    @admin.action(description=_("Unfreeze the selected users"))
    def unfreeze_users(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        self._set_frozen(request, queryset, False)


@admin.register(Device)
class DeviceAdmin(ReadOnlyAdmin):
    list_display = ("device_id", "organization", "device_label", "created_on", "device_certifier")
    list_filter = ("organization",)
    list_select_related = ("organization", "device_certifier")
    search_fields = ("device_id", "device_label")
    fields = ("organization", "user", "device_id", "device_label", "created_on", "device_certifier")
    readonly_fields = fields


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    """The audit trail: read-only, newest first."""

    list_display = ("timestamp", "actor", "action", "organization_id", "target", "details")
    list_filter = ("action", "timestamp")
    search_fields = ("organization_id", "actor", "target")
    date_hierarchy = "timestamp"
    fields = list_display
    readonly_fields = list_display
