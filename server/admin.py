"""The console's organization pages with the figures of every app.

`organizations.admin.OrganizationAdmin` knows the organization's own rows (users, devices, settings, audit
trail); this subclass adds what the apps built on it hold (realms, data and metadata sizes, pending
invitations, sequester services) and the erase action, and takes its place in the admin site. The pages,
columns and URLs are those of the organization model (`admin/organizations/organization/`).
"""
from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, QuerySet, Sum
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext, gettext_lazy as _

from blocks.models import Block
from invites.models import Invitation
from organizations import admin as organizations_admin
from organizations.models import Organization
from realms.models import Realm, VlobAtom
from sequester.models import SequesterService
from server.admin_erase import erase_organization_action

per_organization = organizations_admin.per_organization


def with_figures(queryset: QuerySet[Organization]) -> QuerySet[Organization]:
    """Organizations annotated with every figure of the list, in a single query."""
    return organizations_admin.with_figures(queryset).annotate(
        realm_count=per_organization(Realm.objects.all(), Count("pk")),
        data_size=per_organization(Block.objects.all(), Sum("size")),
        metadata_size=per_organization(VlobAtom.objects.all(), Sum("size")),
    )


class OrganizationAdmin(organizations_admin.OrganizationAdmin):
    list_display = (
        "organization_id",
        "users_column",
        "device_count_column",
        "realm_count_column",
        "data_size_column",
        "metadata_size_column",
        "bootstrapped",
        "is_expired",
        "created_on",
    )
    detail_fields = (
        "organization_id",
        "bootstrapped",
        "bootstrap_url",
        "users_column",
        "users_total_column",
        "users_table",
        "device_count_column",
        "realm_count_column",
        "data_size_column",
        "metadata_size_column",
        "pending_invitations",
        "audit_trail",
        "created_on",
        "bootstrapped_on",
        "expired_on",
        "sequestered",
        "sequester_services",
    )
    actions = [*organizations_admin.OrganizationAdmin.actions, erase_organization_action]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Organization]:
        return with_figures(super().get_queryset(request))

    @admin.display(description=_("Realms"), ordering="realm_count")
    def realm_count_column(self, organization: Organization) -> str:
        url = reverse("admin:realms_realm_changelist") + f"?organization__id__exact={organization.pk}"
        return format_html('<a href="{}">{}</a>', url, organization.realm_count)  # type: ignore[attr-defined]

    @admin.display(description=_("Data size"), ordering="data_size")
    def data_size_column(self, organization: Organization) -> str:
        return format_html('<span title="{}">{}</span>', organization.data_size,  # type: ignore[attr-defined]
                           filesizeformat(organization.data_size))  # type: ignore[attr-defined]

    @admin.display(description=_("Metadata size"), ordering="metadata_size")
    def metadata_size_column(self, organization: Organization) -> str:
        return format_html('<span title="{}">{}</span>', organization.metadata_size,  # type: ignore[attr-defined]
                           filesizeformat(organization.metadata_size))  # type: ignore[attr-defined]

    @admin.display(description=_("Pending invitations"))
    def pending_invitations(self, organization: Organization) -> str:
        count = Invitation.objects.filter(organization=organization, deleted_on__isnull=True).count()
        url = (reverse("admin:invites_invitation_changelist")
               + f"?organization__id__exact={organization.pk}&pending=yes")
        return format_html('<span id="pending-invitations">{}</span> &mdash; <a href="{}">{}</a>', count, url,
                           gettext("list, cancel"))

    @admin.display(description=_("Sequester services"))
    def sequester_services(self, organization: Organization) -> str:
        services = list(SequesterService.objects.filter(organization=organization).order_by("created_on", "pk"))
        url = reverse("admin:sequester_sequesterservice_changelist") + f"?organization__id__exact={organization.pk}"
        listed = format_html_join(
            ", ", "{} ({}, {})",
            (
                (service.service_label, service.get_service_type_display(),
                 gettext("enabled") if service.is_enabled else gettext("disabled"))
                for service in services
            ),
        )
        return format_html('<span id="sequester-services">{}</span> &mdash; <a href="{}">{}</a>',
                           listed or "-", url, gettext("certificates"))


admin.site.unregister(Organization)
admin.site.register(Organization, OrganizationAdmin)
