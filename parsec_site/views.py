"""The small HTML surface: landing page, `/redirect` to `parsec://`, and errors."""
from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.template.loader import render_to_string


class ParsecRedirect(HttpResponseRedirect):
    allowed_schemes = ["parsec"]


def landing(request: HttpRequest) -> HttpResponse:
    return render(request, "landing.html")


def redirect(request: HttpRequest, path: str) -> HttpResponse:
    backend_addr = settings.PARSEC.backend_addr
    if backend_addr is None:
        return HttpResponse("Url redirection is not available", status=501, content_type="text/plain")
    # `no_ssl` comes from the server's own address, never from the link.
    query = [(k, v) for k, v in parse_qsl(request.META.get("QUERY_STRING", ""), keep_blank_values=True) if k != "no_ssl"]
    url = backend_addr.to_url(path="/" + quote(path, safe="/"), query=urlencode(query))
    # Browsers without a `parsec://` handler stay on this page: it says what to do next.
    return ParsecRedirect(url, content=render_to_string("redirect.html", {"parsec_url": url}, request))


def websocket_without_upgrade(request: HttpRequest) -> HttpResponse:
    return HttpResponse("WebSocket upgrade expected", status=400, content_type="text/plain")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(request, "404.html", status=404)
