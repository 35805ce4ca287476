"""Error reporting to Sentry (`--sentry-dsn`, `--sentry-environment`), without user data.

What reaches Sentry: unhandled exceptions of views (Django integration) and every ERROR log record
with its exception (logging integration: the websocket consumer logs its crashed commands), with
INFO+ log lines as breadcrumbs. What never does: request bodies (`max_request_body_size="never"`),
cookies, headers carrying credentials, query strings (`/redirect` links hold invitation tokens),
local variables and source lines of stack frames (locals hold websocket frames, blobs and keys), and any configured
secret value, scrubbed out of messages by the log redactor.
"""
from __future__ import annotations

import logging
from typing import Any

from parsec_site.logging import REDACTOR

SENSITIVE_HEADERS = frozenset({"authorization", "cookie", "set-cookie", "proxy-authorization", "author", "signature"})


def init_sentry(*, dsn: str, environment: str, release: str) -> None:
    import sentry_sdk
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.integrations.logging import LoggingIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release,
        integrations=[
            DjangoIntegration(transaction_style="url", middleware_spans=False, signals_spans=False, cache_spans=False),
            LoggingIntegration(level=logging.INFO, event_level=logging.ERROR),
        ],
        # No user data: the SDK's default while `send_default_pii` is left unset (setting it is deprecated;
        # `data_collection`, its successor, would also turn the SDK's own event scrubber off).
        max_request_body_size="never",
        include_local_variables=False,
        # Frames name file, function and line; no source lines travel (nor the literals they hold).
        include_source_context=False,
        traces_sample_rate=None,
        before_send=scrub_event,  # type: ignore[arg-type]  # any event dict: sentry types it as its Event TypedDict
        before_breadcrumb=scrub_breadcrumb,
    )


def scrub_event(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    request = event.get("request")
    if isinstance(request, dict):
        for key in ("data", "cookies", "query_string", "env"):
            request.pop(key, None)
        if isinstance(request.get("url"), str):
            request["url"] = request["url"].split("?", 1)[0]
        headers = request.get("headers")
        if isinstance(headers, dict):
            request["headers"] = {k: v for k, v in headers.items() if k.lower() not in SENSITIVE_HEADERS}
    return _scrub_strings(event)


def scrub_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    data = crumb.get("data")
    if isinstance(data, dict):
        # Outgoing HTTP (webhooks, S3): keep method, URL path and status, not the query.
        for key in ("http.query", "http.fragment"):
            data.pop(key, None)
        if isinstance(data.get("url"), str):
            data["url"] = data["url"].split("?", 1)[0]
    return _scrub_strings(crumb)


def _scrub_strings(value: Any) -> Any:
    if isinstance(value, str):
        return REDACTOR.scrub_text(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    if isinstance(value, dict):
        return {key: _scrub_strings(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrub_strings(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_scrub_strings(item) for item in value)
    return value
