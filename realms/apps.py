from django.apps import AppConfig


class RealmsConfig(AppConfig):
    name = "realms"

    def ready(self) -> None:
        # Fill the protocol command registry with this app's commands.
        from realms import handlers  # noqa: F401

        # The organization stats count realms, vlobs and blocks; organizations cannot import this app.
        from organizations import hooks as organization_hooks
        from realms.selectors import realm_data_stats, user_current_realm_hex_ids

        organization_hooks.register_data_figures(realm_data_stats)

        # The realm set of a new events subscription, given to the wire (protocol/ imports no app).
        from protocol import hooks as protocol_hooks

        protocol_hooks.user_realm_ids.register(user_current_realm_hex_ids)
