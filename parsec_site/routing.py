from django.urls import path

from protocol.consumer import ParsecConsumer

websocket_urlpatterns = [path("ws", ParsecConsumer.as_asgi())]
