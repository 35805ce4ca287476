"""The URLs served on `--admin-port`: the web console only (its static files come from the middleware)."""
from parsec_site.urls import admin_urlpatterns

urlpatterns = admin_urlpatterns()

handler404 = "parsec_site.views.not_found"
