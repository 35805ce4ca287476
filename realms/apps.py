from django.apps import AppConfig


class RealmsConfig(AppConfig):
    name = "realms"

    def ready(self) -> None:
        # Fill the protocol command registry with this app's commands.
        from realms import handlers  # noqa: F401

        # The organization stats count realms, vlobs and blocks; organizations cannot import this app.
        from organizations import hooks
        from realms.selectors import realm_data_stats

        hooks.register_data_figures(realm_data_stats)
