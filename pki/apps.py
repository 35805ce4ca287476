from django.apps import AppConfig


class PkiConfig(AppConfig):
    name = "pki"
    verbose_name = "PKI enrollments"

    def ready(self) -> None:
        # Fill the protocol command registry with this app's commands.
        from pki import handlers  # noqa: F401
