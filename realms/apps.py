from django.apps import AppConfig


class RealmsConfig(AppConfig):
    name = "realms"

    def ready(self) -> None:
        # Fill the protocol command registry with this app's commands.
        # The realm set of a new events subscription, given to the wire (protocol/ imports no app).
        from protocol import hooks
        from realms import commands, vlob_commands  # noqa: F401
        from realms.services import user_current_realm_ids

        hooks.user_realm_ids.register(user_current_realm_ids)
