"""PKI enrollments (docs/protocol.md#pki-enrollment): a request to join an organization with an X.509 identity.

The server never parses X.509 data: certificates, payloads and signatures are stored verbatim.
"""
from __future__ import annotations

from django.db import models
from django.db.models import Q

from organizations.models import Device, Organization


class EnrollmentState(models.TextChoices):
    SUBMITTED = "SUBMITTED"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"


class PkiEnrollment(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="pki_enrollments")
    # Chosen by the client.
    enrollment_id = models.UUIDField()
    submitter_der_x509_certificate = models.BinaryField()
    # Indexed stand-in for the DER bytes: submissions of one certificate are found by it.
    submitter_der_x509_certificate_sha1 = models.BinaryField(max_length=20)
    submitter_der_x509_certificate_email = models.CharField(max_length=254, null=True, blank=True)
    submit_payload_signature = models.BinaryField()
    submit_payload = models.BinaryField()
    state = models.CharField(max_length=9, choices=EnrollmentState.choices, default=EnrollmentState.SUBMITTED)
    submitted_on = models.DateTimeField()
    cancelled_on = models.DateTimeField(null=True, blank=True)
    rejected_on = models.DateTimeField(null=True, blank=True)
    accepted_on = models.DateTimeField(null=True, blank=True)
    accepter_der_x509_certificate = models.BinaryField(null=True, blank=True)
    accept_payload_signature = models.BinaryField(null=True, blank=True)
    accept_payload = models.BinaryField(null=True, blank=True)
    # The admin device that accepted, and the first device of the user it created.
    accepter = models.ForeignKey(Device, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    accepted_device = models.ForeignKey(Device, null=True, blank=True, on_delete=models.PROTECT, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "enrollment_id"], name="pki_enrollment_id_unique"),
            # Each state carries exactly its own date (and an acceptance its whole answer).
            models.CheckConstraint(
                name="pki_enrollment_state_dates",
                condition=(
                    Q(state="SUBMITTED", cancelled_on__isnull=True, rejected_on__isnull=True, accepted_on__isnull=True)
                    | Q(state="CANCELLED", cancelled_on__isnull=False, rejected_on__isnull=True,
                        accepted_on__isnull=True)
                    | Q(state="REJECTED", cancelled_on__isnull=True, rejected_on__isnull=False,
                        accepted_on__isnull=True)
                    | Q(state="ACCEPTED", cancelled_on__isnull=True, rejected_on__isnull=True,
                        accepted_on__isnull=False, accepter_der_x509_certificate__isnull=False,
                        accept_payload_signature__isnull=False, accept_payload__isnull=False,
                        accepter__isnull=False, accepted_device__isnull=False)
                ),
            ),
        ]
        indexes = [
            models.Index(
                fields=["organization", "submitter_der_x509_certificate_sha1", "submitted_on"],
                name="pki_enrollment_by_certificate",
            ),
            models.Index(fields=["organization", "state"], name="pki_enrollment_by_state"),
        ]

    def __str__(self) -> str:
        return f"{self.organization_id}/{self.enrollment_id.hex} ({self.state})"
