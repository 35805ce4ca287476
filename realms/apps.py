from django.apps import AppConfig


class RealmsConfig(AppConfig):
    name = "realms"

    def ready(self) -> None:
        # Fill the protocol command registry with this app's commands.
        from realms import handlers  # noqa: F401
