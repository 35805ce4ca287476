"""`manage.py run`: start the Parsec server (daphne serving `parsec_site.asgi.application`).

Its options are read by manage.py before Django starts (`parsec_site/cli.py`; `manage.py run --help`),
so this command only sees `settings.PARSEC`.
"""
from __future__ import annotations

import logging
import shlex
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor

from parsec_site import cli, server as serving
from protocol import loop_db
from blocks.stores.config import LocalBlockstore, RaidBlockstore
from parsec_site.config import ServerConfig, check_supported

logger = logging.getLogger("parsec.server")
access_logger = logging.getLogger("parsec.access")

# Worker threads beyond the pool size for sync_to_async work that holds no connection (webhooks,
# e-mails) or waits for one; more would only queue on the pool's own 30 s checkout timeout.
EXECUTOR_MARGIN = 4


def log_action(protocol: str, action: str, details: dict[str, Any]) -> None:
    """daphne's connection events; HTTP requests have their line from RequestLogMiddleware."""
    if protocol == "websocket" and action in ("connected", "rejected", "disconnected"):
        # The query string is left out: it can hold tokens.
        path = str(details.get("path", "")).split("?", 1)[0]
        access_logger.debug("%s WebSocket %s %s", details.get("client") or "-", action, path)


class Command(BaseCommand):
    help = (
        "Start the Parsec server. Its options (flags or PARSEC_* variables) are listed by "
        "`python manage.py run --help` and in docs/configuration.md."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        config: ServerConfig = settings.PARSEC
        try:
            check_supported(config)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        if config.backend_addr is None:
            raise CommandError("--backend-addr / PARSEC_BACKEND_ADDR: required")
        startup = cli.STARTUP or cli.Startup(dev=False, embedded=None)

        self._wait_for_database(config)
        # MOCKED, --dev and the embedded default are one-command starts: they migrate themselves.
        self._migrate(auto=config.db_kind == "MOCKED" or startup.dev or startup.embedded is not None)
        self._prepare_blockstore(config)
        from organizations.models import Organization

        has_organization = Organization.objects.exists()
        connections.close_all()
        if config.workers > 1:
            self._supervise(config, startup, has_organization)
            return

        from channels.routing import get_default_application
        from twisted.internet import reactor

        application = get_default_application()
        # protocol/db.py runs ORM calls with sync_to_async(thread_sensitive=False), i.e. in the event
        # loop's default executor: size it for the connection pool. daphne's reactor owns the loop.
        reactor._asyncioEventloop.set_default_executor(
            ThreadPoolExecutor(max_workers=config.db_max_connections + EXECUTOR_MARGIN, thread_name_prefix="parsec")
        )
        # The vlob hot path's own PostgreSQL pool lives on this loop (protocol/loop_db.py).
        loop_db.serve_from(reactor._asyncioEventloop)

        where = f"fd {config.fd}" if config.fd is not None else f"{config.host}:{config.port}"
        self.stdout.write(
            f"Starting Parsec Backend on {where} (db={config.db_kind} "
            f"blockstore={config.blockstore_config.kind} email={config.email_kind} "
            f"backend_addr={config.backend_addr.to_url()})"
        )
        if config.admin_port is not None and config.admin_enabled and config.admin_fd is None:
            self.stdout.write(
                f"Web console on {config.admin_host or config.host}:{config.admin_port}/{config.admin_url_prefix}"
            )
        if not has_organization and config.fd is None:
            self.stdout.write(self._first_organization_hint(config, startup))
        self.stdout.flush()
        if config.metrics_port is not None and config.fd is None:
            from parsec_site.metrics import start_metrics_server

            start_metrics_server(config.host, config.metrics_port)

        server = serving.build_server(application, serving.ServeOptions(
            host=config.host,
            port=config.port,
            fd=config.fd,
            ssl_keyfile=config.ssl_keyfile,
            ssl_certfile=config.ssl_certfile,
            shutdown_grace=config.shutdown_grace,
            request_timeout=config.request_timeout,
            # docs/protocol.md#routes: `server: parsec/v2.17.0` in debug mode, `server: parsec` otherwise.
            server_name="parsec/v2.17.0" if config.debug else "parsec",
            action_logger=log_action,
            admin_host=config.admin_host,
            admin_port=config.admin_port if config.admin_enabled else None,
            admin_fd=config.admin_fd,
        ))
        try:
            server.run()
        finally:
            for connection in connections.all(initialized_only=True):
                if getattr(connection, "pool", None) is not None:
                    connection.close_pool()  # type: ignore[attr-defined]  # PostgreSQL's wrapper, checked above
        if not server.listening_addresses and config.fd is None:
            raise CommandError(f"Could not listen on {config.host}:{config.port} (see the log above).")
        self.stdout.write("Parsec Backend stopped.")

    def _write_now(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()

    def _supervise(self, config: ServerConfig, startup: cli.Startup, has_organization: bool) -> None:
        """`--workers N`: this process binds the port and runs N server processes on it."""
        import os

        assert config.backend_addr is not None  # checked by handle()
        self.stdout.write(
            f"Starting Parsec Backend on {config.host}:{config.port} with {config.workers} processes "
            f"(db={config.db_kind} blockstore={config.blockstore_config.kind} email={config.email_kind} "
            f"backend_addr={config.backend_addr.to_url()})"
        )
        if not has_organization:
            self.stdout.write(self._first_organization_hint(config, startup))
        self.stdout.flush()
        try:
            supervisor = serving.Supervisor(
                count=config.workers, host=config.host, port=config.port, command=serving.manage_py_command(),
                environ=dict(os.environ), shutdown_grace=config.shutdown_grace,
                write=self._write_now,
                admin_host=config.admin_host,
                admin_port=config.admin_port if config.admin_enabled else None,
            )
        except OSError as exc:
            raise CommandError(f"Could not listen on {config.host}:{config.port}"
                               f"{'' if config.admin_port is None else f' and {config.admin_port}'}: "
                               f"{exc.strerror or exc}") from None
        if config.admin_port is not None and config.admin_enabled:
            self.stdout.write(
                f"Web console on {config.admin_host or config.host}:{config.admin_port}/{config.admin_url_prefix}"
            )
        if supervisor.run(metrics_port=config.metrics_port) != 0:
            raise CommandError("A server process could not start (see the log above).")
        self.stdout.write("Parsec Backend stopped.")

    def _wait_for_database(self, config: ServerConfig) -> None:
        """Retry the first connection `--maximum-database-connection-attempts` times, pausing in between."""
        if config.db_kind != "POSTGRESQL":
            return
        connection = connections[DEFAULT_DB_ALIAS]
        params = connection.get_connection_params()
        attempts = config.maximum_database_connection_attempts
        for attempt in range(attempts + 1):
            try:
                # Outside the pool: a pool checkout would wait its full 30 s timeout per attempt.
                connection.Database.connect(**params, connect_timeout=10).close()  # type: ignore[attr-defined]  # the backend's DB-API module (psycopg), not in the stubs
                return
            except connection.Database.OperationalError as exc:  # type: ignore[attr-defined]  # the backend's DB-API module (psycopg), not in the stubs
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                if attempt == attempts:
                    raise CommandError(
                        f"Cannot connect to the database ({reason}); gave up after {attempt + 1} attempt(s) "
                        "(--maximum-database-connection-attempts)."
                    ) from None
                logger.warning(
                    "Cannot connect to the database (%s), retrying in %ss (%d/%d)",
                    reason, config.pause_before_retry_database_connection, attempt + 1, attempts,
                )
                time.sleep(config.pause_before_retry_database_connection)

    def _migrate(self, *, auto: bool) -> None:
        if auto:
            call_command("migrate", interactive=False, verbosity=0)
            return
        executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if plan:
            names = ", ".join(f"{migration.app_label}.{migration.name}" for migration, _ in plan[:3])
            more = f" and {len(plan) - 3} more" if len(plan) > 3 else ""
            raise CommandError(
                f"The database has {len(plan)} unapplied migration(s) ({names}{more}): "
                "run `python manage.py migrate` (with the same --db / PARSEC_DB) first."
            )

    def _prepare_blockstore(self, config: ServerConfig) -> None:
        stores = config.blockstore_config.nodes if isinstance(config.blockstore_config, RaidBlockstore) else (
            config.blockstore_config,
        )
        for store in stores:
            if isinstance(store, LocalBlockstore):
                try:
                    store.path.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise CommandError(f"--blockstore / PARSEC_BLOCKSTORE: cannot create {store.path}: {exc}") from None
        from blocks.stores.base import BlockStoreError
        from blocks.stores.factory import prepare_blockstore

        try:
            # Like the reference, an unreachable S3 bucket / Swift container aborts the start.
            prepare_blockstore()
        except BlockStoreError as exc:
            raise CommandError(f"--blockstore / PARSEC_BLOCKSTORE: {exc}") from None

    @staticmethod
    def _first_organization_hint(config: ServerConfig, startup: cli.Startup) -> str:
        if startup.embedded is not None:
            command = startup.embedded.create_organization_command
        elif config.db_kind == "MOCKED":
            # Another process cannot see this one's MOCKED database: go through the administration API.
            token = config.administration_token if config.administration_token == cli.DEV_ADMINISTRATION_TOKEN \
                else "<ADMINISTRATION_TOKEN>"
            addr = cli.embedded_backend_addr(config.host, config.port)
            command = (
                f"python manage.py create_organization <NAME> --addr {shlex.quote(addr)} "
                f"--administration-token {shlex.quote(token)}"
            )
        else:
            command = "python manage.py create_organization <NAME> (with this server's PARSEC_* settings)"
        return f"No organization yet; create the first one with: {command}"
