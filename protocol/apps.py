from typing import Any

from django.apps import AppConfig
from django.core import checks


def _registrations_complete(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    """Every identifier the wire needs is registered by an installed app (protocol.hooks): checked once every
    app's ready() ran, so that `manage.py run` (and `check`) refuses to start instead of failing handshakes."""
    from protocol import hooks

    return [
        checks.Error(f"The wire has no registered {name}", hint="Is the app installed in INSTALLED_APPS?",
                     id="protocol.E001")
        for name in hooks.missing()
    ]


class ProtocolConfig(AppConfig):
    name = "protocol"

    def ready(self) -> None:
        # Register the protocol-level commands: debug `ping`, `events_subscribe`, `events_listen`.
        from django.db.models.signals import post_migrate, pre_migrate

        from protocol import events, ping  # noqa: F401
        from protocol.db import lift_statement_timeout, restore_statement_timeout

        checks.register(_registrations_complete)
        pre_migrate.connect(lift_statement_timeout, dispatch_uid="parsec-lift-statement-timeout")
        post_migrate.connect(restore_statement_timeout, dispatch_uid="parsec-restore-statement-timeout")
