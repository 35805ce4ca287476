"""The Django admin console: PKI enrollments, read-only (they only change through the protocol).

Certificates and payloads are not shown: they are the enrolling person's identity data.
"""
from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from pki.models import PkiEnrollment


@admin.register(PkiEnrollment)
class PkiEnrollmentAdmin(admin.ModelAdmin):
    list_display = ("enrollment_id", "organization", "state", "submitted_on", "accepted_device", "accepter")
    list_filter = ("state", "organization")
    list_select_related = ("organization", "accepted_device", "accepter")
    search_fields = ("enrollment_id", "submitter_der_x509_certificate_email")
    ordering = ("-submitted_on",)
    fields = (
        "organization",
        "enrollment_id",
        "state",
        "submitter_der_x509_certificate_email",
        "submitted_on",
        "cancelled_on",
        "rejected_on",
        "accepted_on",
        "accepter",
        "accepted_device",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
