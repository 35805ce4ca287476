from django.apps import AppConfig


class ProtocolConfig(AppConfig):
    name = "protocol"

    def ready(self) -> None:
        # Register the protocol-level commands: debug `ping`, `events_subscribe`, `events_listen`.
        from protocol import events, ping  # noqa: F401

        from django.db.models.signals import post_migrate, pre_migrate

        from protocol.db import lift_statement_timeout, restore_statement_timeout

        pre_migrate.connect(lift_statement_timeout, dispatch_uid="parsec-lift-statement-timeout")
        post_migrate.connect(restore_statement_timeout, dispatch_uid="parsec-restore-statement-timeout")
