"""Registration points that the apps built on `organizations` fill from their `AppConfig.ready()`.

`organizations` is the lowest domain app: invites, realms, blocks, pki and sequester import it, never the
reverse (the architecture test checks it). Where one of its answers needs rows of an app above it, it asks
through a hook here, and the app that owns those rows registers the selector that reads them. An unfilled
hook answers as if that app were not installed.
"""
from __future__ import annotations

from datetime import datetime
from typing import Callable

# {"data_size": bytes of the blocks, "metadata_size": bytes of the vlob versions, "realms": count}
DataFigures = dict[str, int]
# (organization_pk, at) -> the organization's figures, counting only what existed at `at` (None = now).
DataFiguresReader = Callable[[int, datetime | None], DataFigures]
# organization_pk -> certificates of the organization's enabled sequester services, in creation order.
SequesterCertificatesReader = Callable[[int], list[bytes]]

_data_figures: DataFiguresReader | None = None
_sequester_service_certificates: SequesterCertificatesReader | None = None


def register_data_figures(read: DataFiguresReader) -> None:
    """Called by the realms app's `ready()`: the realm, vlob and block figures of the organization stats."""
    global _data_figures
    _data_figures = read


def register_sequester_service_certificates(read: SequesterCertificatesReader) -> None:
    """Called by the sequester app's `ready()`: what `organization_config` lists for a sequestered organization."""
    global _sequester_service_certificates
    _sequester_service_certificates = read


def data_figures(*, organization_pk: int, at: datetime | None) -> DataFigures:
    if _data_figures is None:
        return {"data_size": 0, "metadata_size": 0, "realms": 0}  # no realms app: no realm, vlob nor block
    return _data_figures(organization_pk, at)


def enabled_sequester_service_certificates(*, organization_pk: int) -> list[bytes]:
    if _sequester_service_certificates is None:
        return []  # no sequester app: no service can have been created
    return _sequester_service_certificates(organization_pk)
