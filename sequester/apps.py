from django.apps import AppConfig


class SequesterConfig(AppConfig):
    name = "sequester"

    def ready(self) -> None:
        # `organization_config` lists the enabled services' certificates; organizations cannot import this app.
        from organizations import hooks
        from sequester.selectors import enabled_service_certificates

        hooks.register_sequester_service_certificates(
            lambda organization_pk: enabled_service_certificates(organization_pk=organization_pk)
        )
