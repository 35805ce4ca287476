from django.apps import AppConfig


class BlocksConfig(AppConfig):
    name = "blocks"

    def ready(self) -> None:
        # Fill the protocol command registry with this app's commands.
        from blocks import handlers  # noqa: F401
