from django.apps import AppConfig


class OrganizationsConfig(AppConfig):
    name = "organizations"

    def ready(self) -> None:
        # Fill the protocol command registry with this app's commands, and give the wire the device and API v1
        # handshakes' identifiers through its registration points (protocol/ imports no app).
        from organizations import handlers, handshake  # noqa: F401

        handshake.register()
