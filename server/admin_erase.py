"""The console's "Erase" action on organizations: a confirmation page, then `server.erase`.

Kept out of admin.py so that the organization admin only lists it in its `actions`. The operator selects
one organization, reads what will be deleted, and types the organization id back to confirm.
"""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.translation import gettext, gettext_lazy as _

from organizations import audit
from organizations.models import Organization
from organizations.outcomes import AdministrationError
from server.erase import erase_organization


class EraseConfirmationForm(forms.Form):
    confirmation = forms.CharField(label=_("Organization id"), max_length=64, strip=True)

    def __init__(self, *args, organization_id: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.organization_id = organization_id

    def clean_confirmation(self) -> str:
        value = self.cleaned_data["confirmation"]
        if value != self.organization_id:
            raise forms.ValidationError(
                gettext("Type %(organization)s exactly to erase this organization.") % {"organization": self.organization_id}
            )
        return value


@admin.action(description=_("Erase the selected organization and all its data (asks for confirmation)"))
def erase_organization_action(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Organization]):
    if not request.user.is_superuser:
        modeladmin.message_user(request, gettext("Only a superuser may erase an organization."), messages.ERROR)
        return None
    organizations = list(queryset[:2])
    if len(organizations) != 1:
        modeladmin.message_user(request, gettext("Select exactly one organization to erase."), messages.ERROR)
        return None
    [organization] = organizations
    organization_id = organization.organization_id

    form = EraseConfirmationForm(
        request.POST if "confirm_erase" in request.POST else None, organization_id=organization_id
    )
    if form.is_bound and form.is_valid():
        report = erase_organization(organization_id, dry_run=False, actor=audit.console_actor(request))
        if report is AdministrationError.NOT_FOUND:
            modeladmin.message_user(request, gettext("%(organization)s was erased meanwhile.") % {"organization": organization_id}, messages.WARNING)
            return None
        lines = report.describe()
        modeladmin.message_user(request, " ".join(lines), messages.SUCCESS if report.complete else messages.ERROR)
        return None

    preview = erase_organization(organization_id, dry_run=True)
    if preview is AdministrationError.NOT_FOUND:
        modeladmin.message_user(request, gettext("%(organization)s no longer exists.") % {"organization": organization_id}, messages.WARNING)
        return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": gettext("Erase organization %(organization)s") % {"organization": organization_id},
        "opts": modeladmin.model._meta,
        "organization": organization,
        "preview": preview.describe()[1:],
        "form": form,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "action_name": "erase_organization_action",
    }
    return TemplateResponse(request, "server/erase_confirmation.html", context)
