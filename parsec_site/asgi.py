"""ASGI entry point: HTTP goes to Django (but the invited/authenticated RPC routes and the SSE stream, which
are Channels consumers), `/ws` upgrades to the protocol consumer.

No origin or allowed-hosts validator wraps the websocket route: the official client sends no
Origin header (docs/protocol.md#websocket).
"""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parsec_site.settings")
django_asgi_app = get_asgi_application()

from protocol import hooks  # noqa: E402

# The apps registered what the wire needs from them in their ready(): a missing one fails here, at startup.
hooks.check_registered()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from parsec_site.routing import HttpRouter, websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {"http": HttpRouter(django_asgi_app), "websocket": URLRouter(websocket_urlpatterns)}
)
