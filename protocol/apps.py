from django.apps import AppConfig


class ProtocolConfig(AppConfig):
    name = "protocol"

    def ready(self) -> None:
        # Register the protocol-level commands: debug `ping`, `events_subscribe`, `events_listen`.
        from protocol import events, ping  # noqa: F401
