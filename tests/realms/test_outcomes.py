"""`realms.outcomes.to_reply`: the one mapping of realm-family outcomes to replies, `reason` quirks included
(pure unit test; every command module checks its replies end to end)."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest

from realms.outcomes import (
    OK,
    BadTimestamp,
    InvalidCertification,
    InvalidData,
    RealmRefusal,
    RequireGreaterTimestamp,
    SequesterRefused,
    VlobChangesOk,
    to_reply,
)
from sequester.outcomes import RejectedBySequesterService, SequesterInconsistency, SequesterRefusal

T = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def test_ok_carries_its_fields_in_reply_order():
    assert to_reply("realm_create", OK) == {"status": "ok"}
    reply = to_reply("vlob_poll_changes", VlobChangesOk(changes={}, current_checkpoint=3))
    assert list(reply.items()) == [("status", "ok"), ("changes", {}), ("current_checkpoint", 3)]


@pytest.mark.parametrize(
    ("command", "refusal", "reply"),
    [
        ("realm_status", RealmRefusal.NOT_FOUND, {"status": "not_found", "reason": None}),
        ("realm_status", RealmRefusal.NOT_ALLOWED, {"status": "not_allowed"}),
        ("realm_update_roles", RealmRefusal.NOT_ALLOWED, {"status": "not_allowed", "reason": None}),
        ("realm_create", RealmRefusal.ALREADY_EXISTS, {"status": "already_exists"}),
        ("vlob_create", RealmRefusal.ALREADY_EXISTS, {"status": "already_exists", "reason": None}),
        ("realm_update_archiving", RealmRefusal.NOT_FOUND, {"status": "not_found"}),
    ],
)
def test_refusals_with_and_without_reason(command, refusal, reply):
    assert to_reply(command, refusal) == reply
    assert type(to_reply(command, refusal)["status"]) is str


def test_refusals_with_data():
    assert to_reply("vlob_update", RequireGreaterTimestamp(T)) == {
        "status": "require_greater_timestamp",
        "strictly_greater_than": T,
    }
    assert to_reply("realm_create", InvalidCertification("bad")) == {"status": "invalid_certification", "reason": "bad"}
    assert to_reply("realm_update_archiving", InvalidCertification("bad")) == {"status": "invalid_certification"}
    assert to_reply("realm_create", InvalidData("why")) == {"status": "invalid_data", "reason": "why"}
    assert to_reply("realm_update_roles", BadTimestamp(now=T, client_timestamp=T))["reason"] is None
    assert "reason" not in to_reply("realm_update_archiving", BadTimestamp(now=T, client_timestamp=T))
    inconsistency = SequesterInconsistency(authority_certificate=b"a", services_certificates=[b"s1", b"s2"])
    assert to_reply("vlob_create", SequesterRefused(inconsistency)) == {
        "status": "sequester_inconsistency",
        "sequester_authority_certificate": b"a",
        "sequester_services_certificates": [b"s1", b"s2"],
    }
    service_id = uuid.uuid4()
    rejected = RejectedBySequesterService(service_id=service_id, service_label="Audit", reason="no")
    assert to_reply("vlob_update", SequesterRefused(rejected)) == {
        "status": "rejected_by_sequester_service", "service_id": service_id, "service_label": "Audit", "reason": "no",
    }
    assert to_reply("vlob_create", SequesterRefused(SequesterRefusal.SERVICE_UNAVAILABLE)) == {"status": "timeout"}
    assert to_reply("vlob_create", SequesterRefused(SequesterRefusal.NOT_A_SEQUESTERED_ORGANIZATION)) == {
        "status": "not_a_sequestered_organization"
    }


def test_anything_else_is_a_bug():
    with pytest.raises(TypeError):
        to_reply("realm_create", {"status": "ok"})  # type: ignore[arg-type]
