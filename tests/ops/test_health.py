"""`/health/live` and `/health/ready`: 200 or 503 with one JSON entry per probe."""
from __future__ import annotations

import pytest
from django.test import AsyncClient

from parsec_site import health

pytestmark = pytest.mark.django_db(transaction=True)

PROBE_NAMES = {"database", "migrations", "blockstore", "channel_layer"}


async def test_live():
    response = await AsyncClient().get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready():
    response = await AsyncClient().get("/health/ready")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == PROBE_NAMES
    assert all(check["status"] == "ok" and check["duration_ms"] >= 0 for check in body["checks"].values())


async def test_failing_probe_is_503_with_the_exception_type_only(monkeypatch):
    async def broken() -> None:
        raise ConnectionError("connect to s3.internal:9000 with key AKIA-SECRET failed")

    monkeypatch.setitem(health.PROBES, "blockstore", broken)
    response = await AsyncClient().get("/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["blockstore"]["status"] == "error"
    assert body["checks"]["blockstore"]["error"] == "ConnectionError"
    assert "AKIA-SECRET" not in response.content.decode()
    assert body["checks"]["database"]["status"] == "ok"


async def test_probe_without_answer_is_503(monkeypatch):
    import asyncio

    async def hangs() -> None:
        await asyncio.sleep(60)

    monkeypatch.setattr(health, "PROBE_TIMEOUT", 0.2)
    monkeypatch.setitem(health.PROBES, "channel_layer", hangs)
    response = await AsyncClient().get("/health/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["channel_layer"]["error"] == "no answer within 0.2s"


async def test_pending_migration_is_503(monkeypatch):
    monkeypatch.setattr(health, "_migrations_checked", False)
    monkeypatch.setattr(health, "_pending_migrations", lambda: 2)
    response = await AsyncClient().get("/health/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["migrations"] == {
        "status": "error", "error": "2 unapplied migration(s): run `manage.py migrate`",
        "duration_ms": response.json()["checks"]["migrations"]["duration_ms"],
    }


async def test_missing_local_blockstore_folder_is_503(parsec_settings, tmp_path):
    from blocks.stores.config import parse_blockstore

    missing = tmp_path / "gone"
    parsec_settings(blockstore=(f"LOCAL:{missing}",), blockstore_config=parse_blockstore((f"LOCAL:{missing}",)))
    response = await AsyncClient().get("/health/ready")
    assert response.status_code == 503
    assert "LOCAL blockstore folder" in response.json()["checks"]["blockstore"]["error"]

