from django.conf import settings
from django.contrib import admin
from django.urls import path, re_path
from django.views.static import serve

from organizations.administration import urlpatterns as administration_urlpatterns
from parsec_site import health, metrics, views
from protocol.http import anonymous_rpc

urlpatterns = [
    path("", views.landing, name="landing"),
    path("ws", views.websocket_without_upgrade),
    path("anonymous/<str:organization_id>", anonymous_rpc, name="anonymous-rpc"),
    path("redirect/<path:path>", views.redirect, name="redirect"),
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ready, name="health-ready"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    *administration_urlpatterns,
    re_path(r"^static/(?P<path>.*)$", serve, {"document_root": settings.STATICFILES_DIRS[0]}),
]

handler404 = "parsec_site.views.not_found"
