from typing import Any

from django.urls import path, re_path

from protocol.consumer import ParsecConsumer
from protocol.http_rpc import HttpSessionConsumer

websocket_urlpatterns = [path("ws", ParsecConsumer.as_asgi())]


def http_urlpatterns(django_app: Any) -> list:
    return [
        path("invited/<str:organization_id>", HttpSessionConsumer.as_asgi(kind="invited")),
        path("authenticated/<str:organization_id>", HttpSessionConsumer.as_asgi(kind="authenticated")),
        path("authenticated/<str:organization_id>/events", HttpSessionConsumer.as_asgi(kind="events")),
        re_path(r"", django_app),
    ]
