"""`organizations.hooks`: the registration points the apps built on organizations fill from `ready()`."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from organizations import hooks
from realms.selectors import realm_data_stats


def test_realms_and_sequester_register_their_readers():
    assert hooks._data_figures is realm_data_stats
    # A lambda over `sequester.services.enabled_service_certificates` (keyword-only); what it answers is
    # checked end to end by tests/sequester/test_vlob_sequester.py (organization_config of a sequestered one).
    assert hooks._sequester_service_certificates is not None


def test_registered_readers_are_called_with_the_organization_and_the_moment(monkeypatch):
    seen = []
    figures = {"data_size": 1, "metadata_size": 2, "realms": 3}
    monkeypatch.setattr(hooks, "_data_figures", lambda pk, at: seen.append((pk, at)) or figures)
    at = datetime(2026, 1, 31, tzinfo=timezone.utc)
    assert hooks.data_figures(organization_pk=5, at=at) == figures
    assert seen == [(5, at)]


@pytest.mark.parametrize("at", [None, datetime(2026, 1, 31, tzinfo=timezone.utc)])
def test_unfilled_data_figures_hook_counts_nothing(monkeypatch, at):
    monkeypatch.setattr(hooks, "_data_figures", None)
    assert hooks.data_figures(organization_pk=1, at=at) == {"data_size": 0, "metadata_size": 0, "realms": 0}


def test_unfilled_sequester_hook_lists_no_service(monkeypatch):
    monkeypatch.setattr(hooks, "_sequester_service_certificates", None)
    assert hooks.enabled_sequester_service_certificates(organization_pk=1) == []
