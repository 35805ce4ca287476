"""The Django admin console for operators.

Organizations: created and updated through the same services as the administration API (so creating one
yields a bootstrap URL and expiring one closes its sessions). Users and devices: read-only, they only change
through signed certificates. Keys and certificates are never shown or editable.
"""
from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from organizations import services
from organizations.admin_erase import erase_organization_action
from organizations.models import Device, Organization, User
from organizations.services import AdministrationError
from protocol import types

SETTINGS_FIELDS = ("is_expired", "user_profile_outsider_allowed", "active_users_limit", "minimum_archiving_period")
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
            raise forms.ValidationError("This organization already exists and is bootstrapped.")
        return organization_id

    def validate_unique(self) -> None:
        # `organization_id` is the only unique field, and a not yet bootstrapped organization may be re-created
        # (new token), as with the administration API; `clean_organization_id` refuses bootstrapped ones.
        return None


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = (
        "organization_id",
        "bootstrapped",
        "user_count",
        "is_expired",
        "created_on",
        "bootstrapped_on",
    )
    list_filter = ("is_expired",)
    search_fields = ("organization_id",)
    ordering = ("organization_id",)
    actions = [erase_organization_action]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Organization]:
        return super().get_queryset(request).annotate(user_count=Count("users"))

    @admin.display(boolean=True, description="Bootstrapped?")
    def bootstrapped(self, organization: Organization) -> bool:
        return organization.is_bootstrapped

    @admin.display(description="Users", ordering="user_count")
    def user_count(self, organization: Organization) -> int:
        return organization.user_count  # type: ignore[attr-defined]

    @admin.display(boolean=True, description="Sequestered?")
    def sequestered(self, organization: Organization) -> bool:
        return organization.sequester_authority_certificate is not None

    @admin.display(description="Bootstrap URL")
    def bootstrap_url(self, organization: Organization) -> str:
        if organization.is_bootstrapped:
            return "Already bootstrapped"
        url = bootstrap_url_for(organization)
        if url is None:
            return "Unknown: the server has no backend address (set PARSEC_BACKEND_ADDR)"
        return url

    def get_form(self, request: HttpRequest, obj: Organization | None = None, change: bool = False, **kwargs: Any):
        if obj is None:
            kwargs["form"] = OrganizationCreationForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Organization | None = None) -> tuple[str, ...]:
        if obj is None:
            return CREATION_FIELDS
        return (
            "organization_id",
            "bootstrapped",
            "bootstrap_url",
            "created_on",
            "bootstrapped_on",
            "expired_on",
            "sequestered",
            *SETTINGS_FIELDS,
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Organization | None = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        return (
            "organization_id",
            "bootstrapped",
            "bootstrap_url",
            "created_on",
            "bootstrapped_on",
            "expired_on",
            "sequestered",
        )

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
            messages.error(request, "This organization was bootstrapped meanwhile; nothing was changed.")
            return
        obj.pk = created.organization.pk
        obj.bootstrap_token = created.bootstrap_token
        obj.created_on = created.organization.created_on
        url = bootstrap_url_for(created.organization)
        if url is None:
            messages.warning(
                request,
                "Organization created, but its bootstrap URL cannot be built: the server has no backend address "
                "(set PARSEC_BACKEND_ADDR).",
            )
        else:
            messages.success(request, f"Bootstrap URL of {created.organization.organization_id}: {url}")


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

    @admin.display(boolean=True, description="Revoked?")
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
                self.message_user(
                    request, f"{user.user_id}: cannot be {'frozen' if frozen else 'unfrozen'} "
                    "(revoked, or without a human handle)", messages.WARNING,
                )
            else:
                self.message_user(request, f"{outcome.user_name} <{outcome.user_email}>: frozen={frozen}")

    @admin.action(description="Freeze the selected users (closes their sessions)")
    def freeze_users(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        self._set_frozen(request, queryset, True)

    @admin.action(description="Unfreeze the selected users")
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
