"""`manage.py create_organization NAME`: create an organization and print its bootstrap URL.

Without `--addr` it works on this server's database through the same service as the administration API;
with `--addr` and `--administration-token` it asks a running server's administration API, like
`parsec core create_organization`.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from organizations import audit
from organizations.services import organizations as services
from organizations.outcomes import AdministrationError
from organizations.services.organizations import UNSET
from parsec_site.addr import BackendAddr
from protocol import types

REQUEST_TIMEOUT = 30  # seconds


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be >= 0")
    return value


class Command(BaseCommand):
    help = "Create an organization (or re-create a not yet bootstrapped one) and print its bootstrap URL."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("organization_id", metavar="NAME", help="the organization id")
        parser.add_argument(
            "--addr",
            help="parsec://host[:port][?no_ssl=true] of a running server to ask through its administration API "
            "(default: work on this server's database)",
        )
        parser.add_argument("--administration-token", help="administration token of the server at --addr")
        parser.add_argument(
            "--backend-addr",
            help="public parsec://host[:port][?no_ssl=true] address of this server, for the bootstrap URL "
            "(default: PARSEC_BACKEND_ADDR)",
        )
        parser.add_argument(
            "--active-users-limit",
            type=_non_negative_int,
            help="maximum number of active users (default: the server's initial limit)",
        )
        parser.add_argument(
            "--no-outsiders",
            action="store_true",
            help="do not allow the OUTSIDER profile (default: the server's initial setting)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            organization_id = types.validate_organization_id(options["organization_id"])
        except types.FieldError as exc:
            raise CommandError(f"Invalid organization name: {exc}") from None
        settings_fields: dict[str, Any] = {}
        if options["active_users_limit"] is not None:
            settings_fields["active_users_limit"] = options["active_users_limit"]
        if options["no_outsiders"]:
            settings_fields["user_profile_outsider_allowed"] = False

        if options["addr"]:
            backend_addr, token = self._remote_create(organization_id, options, settings_fields)
        else:
            if options["administration_token"]:
                raise CommandError("--administration-token is only used with --addr (a remote server).")
            backend_addr, token = self._local_create(organization_id, options["backend_addr"], settings_fields)

        url = services.organization_bootstrap_url(
            organization_id=organization_id, bootstrap_token=token, backend_addr=backend_addr
        )
        self.stdout.write(self.style.SUCCESS(f"Organization {organization_id} created. Bootstrap URL:"))
        self.stdout.write(url)

    def _local_create(
        self, organization_id: str, raw_backend_addr: str | None, settings_fields: dict[str, Any]
    ) -> tuple[BackendAddr, str]:
        backend_addr = settings.PARSEC.backend_addr
        if raw_backend_addr:
            try:
                backend_addr = BackendAddr.parse(raw_backend_addr)
            except ValueError as exc:
                raise CommandError(f"Invalid --backend-addr {raw_backend_addr!r}: {exc}") from None
        if backend_addr is None:
            # Checked first: an organization whose bootstrap URL cannot be printed is of no use.
            raise CommandError(
                "No backend address configured, so the bootstrap URL cannot be built: pass "
                "--backend-addr parsec://<host>[:<port>][?no_ssl=true] or set PARSEC_BACKEND_ADDR."
            )
        outcome = services.organization_create(
            organization_id=organization_id,
            user_profile_outsider_allowed=settings_fields.get("user_profile_outsider_allowed", UNSET),
            active_users_limit=settings_fields.get("active_users_limit", UNSET),
        )
        if outcome is AdministrationError.ALREADY_EXISTS:
            raise CommandError(f"Organization {organization_id} already exists and is already bootstrapped.")
        assert not isinstance(outcome, AdministrationError), outcome
        # Through the API (`--addr`), the server records it; here, on the database directly, we do.
        audit.record(actor=audit.command_actor("create_organization"), action=audit.Action.ORGANIZATION_CREATED,
                     organization_id=organization_id, details=settings_fields)
        return backend_addr, outcome.bootstrap_token

    def _remote_create(
        self, organization_id: str, options: dict[str, Any], settings_fields: dict[str, Any]
    ) -> tuple[BackendAddr, str]:
        try:
            backend_addr = BackendAddr.parse(options["addr"])
        except ValueError as exc:
            raise CommandError(f"Invalid --addr {options['addr']!r}: {exc}") from None
        token = options["administration_token"]
        if not token:
            raise CommandError("--addr needs --administration-token (the server's administration token).")

        request = urllib.request.Request(
            backend_addr.to_http_url("/administration/organizations"),
            method="POST",
            data=json.dumps({"organization_id": organization_id, **settings_fields}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise CommandError(self._http_error_message(exc, organization_id)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CommandError(f"Cannot reach server {backend_addr.to_http_url()}: {reason}") from None
        except ValueError:
            raise CommandError("The server answered with invalid JSON; is --addr a Parsec server?") from None
        bootstrap_token = body.get("bootstrap_token") if isinstance(body, dict) else None
        if not isinstance(bootstrap_token, str):
            raise CommandError("The server's answer has no bootstrap token; is --addr a Parsec server?")
        return backend_addr, bootstrap_token

    @staticmethod
    def _http_error_message(exc: urllib.error.HTTPError, organization_id: str) -> str:
        try:
            body = json.loads(exc.read())
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        if exc.code == 403:
            return "Wrong administration token (the server answered 403 not_allowed)."
        if exc.code == 400 and error == "already_exists":
            return f"Organization {organization_id} already exists and is already bootstrapped."
        if exc.code == 400 and error == "bad_data":
            return f"The server refused the request: {body.get('reason')}"
        return f"Unexpected answer from the server: HTTP {exc.code} {body if body is not None else ''}".rstrip()
