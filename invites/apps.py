from django.apps import AppConfig


class InvitesConfig(AppConfig):
    name = "invites"

    def ready(self) -> None:
        # Fill the protocol command registry with this app's commands.
        from invites import handlers  # noqa: F401
