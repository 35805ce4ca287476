"""HTTP middleware: the access log line and metrics of every request, and `--forward-proto-enforce-https`."""
from __future__ import annotations

import base64
import binascii
import time
from typing import Any, Awaitable, Callable

import structlog
from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponsePermanentRedirect

from whitenoise.middleware import WhiteNoiseMiddleware

from parsec_site import metrics

access_logger = structlog.get_logger("parsec.access")

GetResponse = Callable[[HttpRequest], Any]


class _Middleware:
    """Runs on the async path under ASGI (our views are async) and on the sync path in sync tests."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self.__acall__(request)
        early = self.before(request)
        return self.after(request, early if early is not None else self.get_response(request))

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        early = self.before(request)
        response = early if early is not None else await self.get_response(request)
        return self.after(request, response)

    def before(self, request: HttpRequest) -> HttpResponseBase | None:
        return None

    def after(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        return response


class ForwardProtoMiddleware(_Middleware):
    """docs/protocol.md#routes: behind a proxy that terminates TLS, send plain-HTTP visitors to `https://`.

    A request carrying the configured header with *another* value came over plain HTTP to the proxy:
    301 to the same URL in `https://`. Without the header (a direct or internal request) or with the
    expected value it is served. Websockets are not redirected, as in the reference.
    """

    def before(self, request: HttpRequest) -> HttpResponseBase | None:
        rule: tuple[str, str] | None = settings.PARSEC.forward_proto_enforce_https
        if rule is None:
            return None
        header, expected = rule
        value = request.headers.get(header)
        # Served over TLS by us (`--ssl-certfile`): the URL is already https.
        if value is None or value == expected or request.scheme != "http":
            return None
        return HttpResponsePermanentRedirect(f"https://{request.get_host()}{request.get_full_path()}")


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise, able to run on the async path: other requests (the HTTP RPC) keep away from threads.

    WhiteNoise's middleware is sync-only, so Django would hop every request through a worker thread.
    The lookup of a static path is a dict lookup; only serving a file (opening it) goes to a thread.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        super().__init__(get_response)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        if self.autorefresh:
            static_file = await sync_to_async(self.find_file, thread_sensitive=False)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is not None:
            return await sync_to_async(self.serve, thread_sensitive=False)(static_file, request)
        return await self.get_response(request)


class AdminPortMiddleware(_Middleware):
    """`--admin-port`: a request that came in on the console's port is routed to the console's URLs only."""

    def before(self, request: HttpRequest) -> HttpResponseBase | None:
        admin_port = settings.PARSEC.admin_port
        if admin_port is not None and request.META.get("SERVER_PORT") == str(admin_port):
            request.urlconf = "parsec_site.admin_urls"  # type: ignore[attr-defined]  # Django's documented per-request URLconf
        return None


class RequestLogMiddleware(_Middleware):
    """One access log line and the HTTP metrics per request (docs/configuration.md#options). Outermost middleware.

    The query string is never logged: `/redirect` links carry invitation tokens in it.
    """

    def before(self, request: HttpRequest) -> HttpResponseBase | None:
        request.parsec_started = time.monotonic()  # type: ignore[attr-defined]
        return None

    def after(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        duration = time.monotonic() - getattr(request, "parsec_started", time.monotonic())
        match = request.resolver_match
        route = match.route if match is not None and match.route else "unmatched"
        metrics.record_http_request(method=request.method or "-", route=route, status=response.status_code,
                                    duration=duration)
        fields: dict[str, Any] = {
            "client": _client(request),
            "method": request.method,
            "path": request.path,
            "http_version": request.META.get("SERVER_PROTOCOL", "HTTP/1.1"),
            "status": response.status_code,
            "size": _body_size(response),
            "duration_ms": round(duration * 1000, 1),
            "author": _author(request),
        }
        organization_id = match.kwargs.get("organization_id") if match is not None else None
        if organization_id is not None:
            fields["organization_id"] = organization_id
        access_logger.info("HTTP request", **fields)
        return response


def _client(request: HttpRequest) -> str:
    address = request.META.get("REMOTE_ADDR")
    port = request.META.get("REMOTE_PORT")
    if not address:
        return "-"
    return f"{address}:{port}" if port else str(address)


def _body_size(response: HttpResponseBase) -> int | None:
    if isinstance(response, HttpResponse):
        return len(response.content)
    length = response.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _author(request: HttpRequest) -> str:
    """The base64-decoded `Author` header (a device id, public) of authenticated HTTP RPC, else `-`."""
    raw = request.headers.get("Author")
    if not raw:
        return "-"
    try:
        return base64.b64decode(raw, validate=True).decode("utf-8")[:256]
    except (binascii.Error, UnicodeDecodeError):
        return "<invalid>"
