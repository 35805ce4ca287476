"""The web console: realms, read-only (they only change through signed certificates), with their sizes.

Realm ids are public metadata; names, keys and contents are encrypted and never reach the server.
"""
from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import BigIntegerField, Count, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from realms.models import Realm, VlobAtom


def _per_realm(queryset: QuerySet, value: Any) -> Coalesce:
    rows = queryset.filter(realm=OuterRef("pk")).order_by().values("realm").annotate(value=value)
    return Coalesce(Subquery(rows.values("value"), output_field=BigIntegerField()), 0)


@admin.register(Realm)
class RealmAdmin(admin.ModelAdmin):
    list_display = ("realm_id", "organization", "created_on", "members", "vlobs", "data_size_column",
                    "metadata_size_column", "encryption_revision", "maintenance_type")
    list_filter = ("organization", "maintenance_type")
    list_select_related = ("organization",)
    search_fields = ("realm_id", "organization__organization_id")
    ordering = ("-created_on",)
    fields = ("organization", "realm_id", "created_on", "encryption_revision", "maintenance_type",
              "maintenance_started_on", "members", "vlobs", "data_size_column", "metadata_size_column")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Realm]:
        from blocks.models import Block
        from realms.models import RealmUserRole

        # Current members: the latest role certificate of each user in the realm is not a removal.
        return super().get_queryset(request).annotate(
            member_count=_per_realm(
                RealmUserRole.objects.filter(
                    role__isnull=False,
                    certified_on=Subquery(
                        RealmUserRole.objects.filter(realm=OuterRef("realm"), user=OuterRef("user"))
                        .order_by("-certified_on").values("certified_on")[:1]
                    ),
                ),
                Count("user", distinct=True),
            ),
            vlob_count=_per_realm(VlobAtom.objects.all(), Count("vlob_id", distinct=True)),
            data_size=_per_realm(Block.objects.all(), Sum("size")),
            metadata_size=_per_realm(VlobAtom.objects.all(), Sum("size")),
        )

    @admin.display(description=_("Members"), ordering="member_count")
    def members(self, realm: Realm) -> int:
        return realm.member_count  # type: ignore[attr-defined]

    @admin.display(description=_("Vlobs"), ordering="vlob_count")
    def vlobs(self, realm: Realm) -> int:
        return realm.vlob_count  # type: ignore[attr-defined]

    @admin.display(description=_("Data size"), ordering="data_size")
    def data_size_column(self, realm: Realm) -> str:
        return format_html('<span title="{}">{}</span>', realm.data_size,  # type: ignore[attr-defined]
                           filesizeformat(realm.data_size))  # type: ignore[attr-defined]

    @admin.display(description=_("Metadata size"), ordering="metadata_size")
    def metadata_size_column(self, realm: Realm) -> str:
        return format_html('<span title="{}">{}</span>', realm.metadata_size,  # type: ignore[attr-defined]
                           filesizeformat(realm.metadata_size))  # type: ignore[attr-defined]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
