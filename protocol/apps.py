from django.apps import AppConfig


class ProtocolConfig(AppConfig):
    name = "protocol"

    def ready(self) -> None:
        from protocol import ping  # noqa: F401  (registers the debug `ping` command)
