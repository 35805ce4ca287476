from django.apps import AppConfig


class OrganizationsConfig(AppConfig):
    name = "organizations"

    def ready(self) -> None:
        # Fill the protocol command registry with this app's commands.
        from organizations import handlers  # noqa: F401
