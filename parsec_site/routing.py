import re
from typing import Any

from channels.routing import URLRouter
from django.conf import settings
from django.urls import path

from protocol.consumer import ParsecConsumer
from protocol.http_rpc import HttpSessionConsumer

websocket_urlpatterns = [path("ws", ParsecConsumer.as_asgi())]

_SESSION_ROUTE = re.compile(r"/(invited|authenticated)/[^/]+(/events)?")


class HttpRouter:
    """The invited/authenticated RPC routes and the SSE stream go to their Channels consumers, everything
    else to Django. Django also gets those routes when its middleware has the answer: a request on the
    console's port (`--admin-port` serves the console only: 404) or one `--forward-proto-enforce-https`
    redirects (301)."""

    def __init__(self, django_app: Any) -> None:
        self.django_app = django_app
        self.consumers = URLRouter([
            path("invited/<str:organization_id>", HttpSessionConsumer.as_asgi(kind="invited")),
            path("authenticated/<str:organization_id>", HttpSessionConsumer.as_asgi(kind="authenticated")),
            path("authenticated/<str:organization_id>/events", HttpSessionConsumer.as_asgi(kind="events")),
        ])

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if _SESSION_ROUTE.fullmatch(scope["path"]) and not _django_answers(scope):
            return await self.consumers(scope, receive, send)
        return await self.django_app(scope, receive, send)


def _django_answers(scope: dict[str, Any]) -> bool:
    admin_port = settings.PARSEC.admin_port
    server = scope.get("server")
    if admin_port is not None and server is not None and str(server[1]) == str(admin_port):
        return True
    rule = settings.PARSEC.forward_proto_enforce_https
    if rule is None or scope.get("scheme", "http") != "http":
        return False
    header, expected = rule
    wanted = header.lower().encode()
    values = [value.decode("latin-1") for name, value in scope["headers"] if name.lower() == wanted]
    return bool(values) and values[0] != expected
