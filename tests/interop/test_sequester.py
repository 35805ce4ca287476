"""A sequestered organization driven by the official 2.17.0 client (issue 13).

Bootstrap with `--sequester-verify-key` (openssl-made RSA keys), a storage service and a webhook
service created with our management commands, files written by the client (the webhook sees one
blob per vlob write), the webhook service disabled (the client gets `sequester_inconsistency`,
refreshes its list and writes again), then the realm exported with our `sequester_export_realm`
and extracted with the REFERENCE's `parsec backend sequester extract_realm_export`: the files it
recovers are compared byte for byte with what the client wrote.
"""
from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.sequester.webhook_server import WebhookServer

from .conftest import REPO_ROOT, our_server_env
from .refclient import ParsecCli

pytestmark = pytest.mark.interop

FIRST = {"/report.txt": b"Quarterly report, first draft\n", "/data/big.bin": os.urandom(700 * 1024)}
AFTER_DISABLE = {"/report.txt": b"Quarterly report, final version\n", "/late.txt": "écrit après\n".encode()}


def openssl_key_pair(folder: Path, name: str) -> tuple[Path, Path]:
    private, public = folder / f"{name}.pem", folder / f"{name}.pub.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(private), "2048"], check=True, capture_output=True)
    subprocess.run(["openssl", "rsa", "-in", str(private), "-pubout", "-out", str(public)], check=True,
                   capture_output=True)
    return private, public


def manage(server, *args: str) -> str:
    """One of our management commands, on the server's database."""
    result = subprocess.run(
        [str(REPO_ROOT / ".venv/bin/python"), "manage.py", *args], cwd=REPO_ROOT, capture_output=True, text=True,
        env=our_server_env(PARSEC_DB=server.db_url, PARSEC_BLOCKSTORE="POSTGRESQL"), timeout=120,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


def service_id_of(output: str) -> str:
    match = re.search(r"\(id: ([0-9a-f]{32})\)", output)
    assert match, output
    return match.group(1)


def stored_blob_count(server, service_id: str) -> int:
    import psycopg

    with psycopg.connect(server.db_url) as conn:
        return conn.execute(
            "SELECT count(*) FROM sequester_sequesterservicevlobatom b"
            " JOIN sequester_sequesterservice s ON s.id = b.service_id WHERE s.service_id = %s",
            (uuid.UUID(service_id),),
        ).fetchone()[0]


def test_sequestered_organization_end_to_end(ours_server, reference_client, tmp_path):
    # Our server only, whatever $PARSEC_INTEROP_SERVERS says: the test drives our commands and database.
    server = ours_server
    keys = tmp_path / "keys"
    keys.mkdir()
    _authority_private, authority_public = openssl_key_pair(keys, "authority")
    storage_private, storage_public = openssl_key_pair(keys, "storage")
    _hook_private, hook_public = openssl_key_pair(keys, "hook")

    alice = ParsecCli(reference_client, tmp_path / "alice")
    org_id = f"Seq{uuid.uuid4().hex[:12]}"
    url = alice.create_organization(server.addr, org_id, server.admin_token)
    alice.bootstrap_organization(url, "alice@example.com", "Alice", "laptop", "P@ssw0rd",
                                 sequester_verify_key=authority_public)

    webhook = WebhookServer()
    try:
        storage_id = service_id_of(manage(
            server, "sequester_create_service", "--organization", org_id, "--service-label", "Escrow",
            "--service-public-key", str(storage_public), "--authority-private-key", str(keys / "authority.pem"),
        ))
        hook_id = service_id_of(manage(
            server, "sequester_create_service", "--organization", org_id, "--service-label", "Antivirus",
            "--service-public-key", str(hook_public), "--authority-private-key", str(keys / "authority.pem"),
            "--service-type", "webhook", "--webhook-url", webhook.url,
        ))
        listing = manage(server, "sequester_list_services", "--organization", org_id)
        assert "Found 2 sequester service(s)" in listing and webhook.url in listing

        # Writes with both services enabled: every vlob write reaches both.
        steps = [{"op": "create_workspace", "workspace": "Legal"}]
        steps += [{"op": "write", "workspace": "Legal", "path": path, "data": data} for path, data in FIRST.items()]
        results = alice.batch(steps)
        workspace_id = results[0]["workspace_id"]
        writes_with_webhook = stored_blob_count(server, storage_id)
        assert writes_with_webhook > 0
        assert len(webhook.received) == writes_with_webhook
        assert {(query["organization_id"][0], query["service_id"][0]) for query, _ in webhook.received} == {
            (org_id, hook_id)}

        # The webhook service disabled: the client learns it from `sequester_inconsistency`.
        assert manage(server, "sequester_update_service", "--organization", org_id, "--service", hook_id,
                      "--disable").strip() == "Service updated"
        alice.batch([{"op": "write", "workspace": "Legal", "path": path, "data": data}
                     for path, data in AFTER_DISABLE.items()])
        assert len(webhook.received) == writes_with_webhook
        assert stored_blob_count(server, storage_id) > writes_with_webhook
    finally:
        webhook.close()

    # Export with our command, extract with the reference's tool.
    export = tmp_path / "export.sqlite"
    out = manage(server, "sequester_export_realm", "--organization", org_id, "--realm", workspace_id,
                 "--service", storage_id, "--output", str(export))
    assert f"Created {export}" in out
    extracted = tmp_path / "extracted"
    result = subprocess.run(
        [str(reference_client / "parsec"), "backend", "sequester", "extract_realm_export",
         "--service-decryption-key", str(storage_private), "--input", str(export), "--output", str(extracted)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    expected = {**FIRST, **AFTER_DISABLE}
    found = {
        "/" + path.relative_to(extracted).as_posix(): path.read_bytes()
        for path in extracted.rglob("*") if path.is_file()
    }
    assert found == expected


def test_certificate_generated_by_the_reference_is_imported(ours_server, reference_client, tmp_path):
    """The reference's offline `generate_service_certificate` PEM goes into our import command."""
    server = ours_server
    _authority_private, authority_public = openssl_key_pair(tmp_path, "authority")
    _service_private, service_public = openssl_key_pair(tmp_path, "service")
    alice = ParsecCli(reference_client, tmp_path / "alice")
    org_id = f"Seq{uuid.uuid4().hex[:12]}"
    url = alice.create_organization(server.addr, org_id, server.admin_token)
    alice.bootstrap_organization(url, "alice@example.com", "Alice", "laptop", "P@ssw0rd",
                                 sequester_verify_key=authority_public)
    pem = tmp_path / "service.crt"
    result = subprocess.run(
        [str(reference_client / "parsec"), "backend", "sequester", "generate_service_certificate",
         "--service-label", "Made by the reference", "--service-public-key", str(service_public),
         "--authority-private-key", str(tmp_path / "authority.pem"), "--output", str(pem)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    service_id = service_id_of(manage(server, "sequester_import_service_certificate", "--organization", org_id,
                                      "--service-certificate", str(pem)))
    listing = manage(server, "sequester_list_services", "--organization", org_id)
    assert f"Service Made by the reference (id: {service_id})" in listing
