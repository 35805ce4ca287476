"""Sequester services in the admin console: read-only (the operator changes them with the
`sequester_*` management commands, which check the authority's signature)."""
from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html

from organizations.admin import ReadOnlyAdmin
from sequester import certificates
from sequester.models import SequesterService


@admin.register(SequesterService)
class SequesterServiceAdmin(ReadOnlyAdmin):
    list_display = ("service_label", "service_id_hex", "organization", "service_type", "enabled", "created_on",
                    "disabled_on")
    list_filter = ("service_type", "organization")
    list_select_related = ("organization",)
    search_fields = ("service_label", "organization__organization_id")
    fields = ("organization", "service_label", "service_id_hex", "service_type", "webhook_url", "created_on",
              "disabled_on", "certificate_pem")
    readonly_fields = fields

    @admin.display(description="Service id")
    def service_id_hex(self, service: SequesterService) -> str:
        return service.service_id.hex

    @admin.display(boolean=True, description="Enabled?")
    def enabled(self, service: SequesterService) -> bool:
        return service.is_enabled

    @admin.display(description="Certificate")
    def certificate_pem(self, service: SequesterService) -> str:
        # The same PEM armour as sequester_generate_service_certificate writes.
        return format_html("<pre>{}</pre>", certificates.dump_pem(bytes(service.service_certificate)))
