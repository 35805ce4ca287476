from django.conf import settings
from django.contrib import admin
from django.urls import URLPattern, URLResolver, path

from organizations.administration import urlpatterns as administration_urlpatterns
from parsec_site import health, metrics, views
from protocol.http import anonymous_rpc
from server.console import console_urlpatterns


def admin_urlpatterns() -> list[URLPattern | URLResolver]:
    """The web console at `--admin-prefix`, or nothing with `--admin off`."""
    prefix = settings.PARSEC.admin_url_prefix
    if prefix is None:
        return []
    # Our pages first: the admin site's catch-all would answer them 404.
    return [*console_urlpatterns(prefix), path(prefix, admin.site.urls)]


urlpatterns = [
    path("", views.landing, name="landing"),
    path("ws", views.websocket_without_upgrade),
    path("anonymous/<str:organization_id>", anonymous_rpc, name="anonymous-rpc"),
    path("redirect/<path:path>", views.redirect, name="redirect"),
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ready, name="health-ready"),
    path("metrics", metrics.metrics_view, name="metrics"),
    # On its own port (`--admin-port`), the console is not served to the clients' port.
    *(admin_urlpatterns() if settings.PARSEC.admin_port is None else []),
    *administration_urlpatterns,
]

handler404 = "parsec_site.views.not_found"
