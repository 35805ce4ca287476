from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from tests.organizations.factories import bootstrapped_organization

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class AdminApi:
    """django.test.Client speaking to the administration API with the token, JSON bodies by default."""

    def __init__(self) -> None:
        self.client = Client()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ):
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        return self.client.generic(
            method, path, data=data, content_type=content_type, headers=AUTH if headers is None else headers
        )

    def get(self, path: str, **kwargs: Any):
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any):
        return self.request("POST", path, body, **kwargs)

    def patch(self, path: str, body: Any = None, **kwargs: Any):
        return self.request("PATCH", path, body, **kwargs)


@pytest.fixture
def api(db) -> AdminApi:
    return AdminApi()


@pytest.fixture
def coolorg(db):
    """`CoolOrg`, bootstrapped by alice (ADMIN)."""
    organization, _alice = bootstrapped_organization("CoolOrg")
    return organization
