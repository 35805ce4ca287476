"""`/anonymous/<org>`: msgpack RPC over HTTP (docs/protocol.md#http-rpc). Errors are status codes, empty bodies."""
from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

import structlog

from protocol import codec, hooks, replies, types
from protocol.db import run_sync
from protocol.registry import DatabaseUnavailable, Family, lookup
from protocol.session import AnonymousSession
from parsec_site import metrics

MAX_BODY_SIZE = 1024 * 1024
SUPPORTED_HTTP_API_VERSIONS = "2.10;3.4"
# Old clients send their msgpack body with the form content type.
ACCEPTED_CONTENT_TYPES = ("application/msgpack", "application/x-www-form-urlencoded")
HTTP_ORGANIZATION_EXPIRED = 460
# Refusals of the invited/authenticated routes' per-request handshake (docs/protocol.md#session-routes).
HTTP_BAD_AUTHENTICATION = 401
HTTP_NOT_FOUND = 404
HTTP_INVITATION_DELETED = 410
HTTP_USER_REVOKED = 461
# Not a 2.17 status (the reference does not check the frozen flag over HTTP): the one the 3.x servers use.
HTTP_USER_FROZEN = 462
log = structlog.get_logger("parsec.protocol")


def parse_api_version(raw: str | None) -> tuple[int, int] | None:
    if raw is None:
        return (3, 0)  # 2.17's anonymous calls carry no header
    major, sep, minor = raw.strip().partition(".")
    if not sep or not major.isdigit() or not minor.isdigit():
        return None
    version = (int(major), int(minor))
    return version if version[0] in (2, 3) else None


def _empty(status: int, api_version: tuple[int, int] | None = None) -> HttpResponse:
    response = HttpResponse(status=status, content=b"")
    if api_version is not None:
        response["Api-Version"] = "3.4" if api_version[0] == 3 else "2.10"
    return response


def _database_outage_is_503(view):
    """The database out of reach: 503 with Retry-After, which HTTP clients know to retry, not a 500."""
    import functools

    from protocol.db import database_unavailable
    from protocol.registry import DatabaseUnavailable

    @functools.wraps(view)
    async def run(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            return await view(request, *args, **kwargs)
        except Exception as exc:
            if not (isinstance(exc, DatabaseUnavailable) or database_unavailable(exc)):
                raise
            response = _empty(503)
            response["Retry-After"] = "5"
            return response

    return run


@csrf_exempt
@_database_outage_is_503
async def anonymous_rpc(request: HttpRequest, organization_id: str) -> HttpResponse:
    if request.method not in ("GET", "POST"):
        return HttpResponse(status=405)
    if len(request.body) > MAX_BODY_SIZE:
        return HttpResponse(status=413)
    api_version = parse_api_version(request.headers.get("Api-Version"))
    if api_version is None:
        response = HttpResponse(status=422)
        response["Supported-Api-Versions"] = SUPPORTED_HTTP_API_VERSIONS
        return response

    try:
        organization_id = types.validate_organization_id(organization_id)
    except types.FieldError:
        return _empty(404, api_version)
    # Organizations are an app's data: the app registers the lookup (protocol.hooks).
    organization = await run_sync(hooks.find_organization, organization_id)
    if organization is None and not (request.method == "POST" and settings.PARSEC.spontaneous_organization_bootstrap):
        return _empty(404, api_version)
    if organization is not None and organization.is_expired:
        return _empty(HTTP_ORGANIZATION_EXPIRED, api_version)
    if request.content_type not in ACCEPTED_CONTENT_TYPES:
        return _empty(415, api_version)
    if request.method == "GET":
        if organization is None:
            return _empty(404, api_version)
        return _msgpack_response(b"\x80", api_version)

    session = AnonymousSession(
        organization_id=organization_id,
        organization_pk=organization.pk if organization is not None else None,
        api_version=api_version,
    )
    outcome = await run_command(Family.ANONYMOUS, session, request.body)
    if isinstance(outcome, int):
        response = _empty(outcome, api_version)
        if outcome == 500:
            response._has_been_logged = True  # type: ignore[attr-defined]  # Django's marker: no second "Internal Server Error" line
        return response
    return _msgpack_response(outcome, api_version)


async def run_command(family: Family, session: Any, body: bytes) -> bytes | int:
    """One msgpack request of an HTTP route, to its reply body or an HTTP status (415 for what is not
    a command of the route, 500 when the command crashed). The three HTTP routes go through here."""
    try:
        raw = codec.unpackb(body)
    except codec.DecodeError:
        return 415
    if not isinstance(raw, dict):
        return 415
    spec = lookup(family, raw.get("cmd"), debug=settings.PARSEC.debug)
    if spec is None:
        return 415
    try:
        req = types.decode_command_request(spec.request, raw)
    except types.FieldError as exc:
        log.info("Request refused: bad message", cmd=spec.name, status="bad_message", reason=str(exc))
        return codec.packb(replies.bad_message(str(exc)))
    started = time.monotonic()
    try:
        reply = await spec.handler(session, req)
        # `events_listen` answers already encoded.
        status = str(reply.get("status")) if isinstance(reply, dict) else "ok"
        duration = time.monotonic() - started
        metrics.record_command(family=family.value, command=spec.name, status=status, duration=duration)
        log.info("Request", cmd=spec.name, status=status, duration_ms=round(duration * 1000, 1), transport="http")
        return reply if isinstance(reply, bytes) else codec.packb(replies.well_formed(reply))
    except DatabaseUnavailable:
        raise  # the route answers 503
    except Exception:
        # One line with the traceback (and the Sentry event); the client sees a server error.
        log.exception("Command crashed", cmd=spec.name)
        return 500


def _msgpack_response(body: bytes, api_version: tuple[int, int]) -> HttpResponse:
    response = HttpResponse(body, content_type="application/msgpack")
    response["Api-Version"] = "3.4" if api_version[0] == 3 else "2.10"
    return response
