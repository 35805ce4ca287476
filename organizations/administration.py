"""The administration REST API (docs/protocol.md#administration): thin views over `organizations.services`
and `organizations.selectors`.

Every route checks the bearer token first, parses bodies as JSON whatever their Content-Type (the 2.17 CLI
sends form-encoded JSON) and answers JSON with the reference's exact error bodies.
"""
from __future__ import annotations

import csv
import hmac
import io
import json
import re
from datetime import datetime
from functools import wraps
from typing import Any, Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from organizations import audit, selectors
from organizations.services import organizations as services
from organizations.outcomes import AdministrationError, OrganizationStats
from organizations.services.organizations import HumanUserItem
from protocol import types
from protocol.db import call_surviving_dead_connections

View = Callable[..., HttpResponse]

_INT64_MAX = 2**63 - 1
# RFC 3339 `date-time`: a full date and time with a mandatory offset (a bare date is refused).
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")

CSV_HEADER = (
    "organization_id",
    "data_size",
    "metadata_size",
    "realms",
    "active_users",
    "admin_users_active",
    "admin_users_revoked",
    "standard_users_active",
    "standard_users_revoked",
    "outsider_users_active",
    "outsider_users_revoked",
)


# --- responses and request parsing ------------------------------------------------------------------------------


def _error(status: int, error: str, **fields: Any) -> JsonResponse:
    return JsonResponse({"error": error, **fields}, status=status)


def _bad_data(reason: str) -> JsonResponse:
    return _error(400, "bad_data", reason=reason)


NOT_FOUND_BODY = {"error": "not_found"}

_ERROR_RESPONSES: dict[AdministrationError, tuple[int, dict[str, str]]] = {
    AdministrationError.NOT_FOUND: (404, NOT_FOUND_BODY),
    AdministrationError.ALREADY_EXISTS: (400, {"error": "already_exists"}),
    AdministrationError.USER_NOT_FOUND: (404, {"error": "user_not_found"}),
    AdministrationError.NO_USER_ID_NOR_EMAIL: (
        400,
        {"error": "bad_data", "reason": "Missing either `user_id` or `user_email` field"},
    ),
    AdministrationError.BOTH_USER_ID_AND_EMAIL: (
        400,
        {"error": "bad_data", "reason": "Both `user_id` and `user_email` fields are provided"},
    ),
}


def _error_response(error: AdministrationError) -> JsonResponse:
    status, body = _ERROR_RESPONSES[error]
    return JsonResponse(body, status=status)


class BadData(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise types.FieldError("Not a valid boolean.")
    return value


def _non_negative_integer(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise types.FieldError("Not a valid integer.")
    if not 0 <= value <= _INT64_MAX:
        raise types.FieldError(f"Must be between 0 and {_INT64_MAX}.")
    return value


def _optional(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else parse(value)


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise types.FieldError("Not a valid string.")
    return value


def _load_body(
    request: HttpRequest, *, required: dict[str, Callable[[Any], Any]], optional: dict[str, Callable[[Any], Any]]
) -> dict[str, Any]:
    """The JSON object of the body, with the known fields validated; absent optional keys stay absent."""
    try:
        raw = json.loads(request.body)
    except ValueError:
        raise BadData("Invalid JSON") from None
    if not isinstance(raw, dict):
        raise BadData("Invalid input type: expected a JSON object.")
    decoded: dict[str, Any] = {}
    errors: list[str] = []
    for name, parse in (*required.items(), *optional.items()):
        if name not in raw:
            if name in required:
                errors.append(f"{name}: Missing data for required field.")
            continue
        try:
            decoded[name] = parse(raw[name])
        except types.FieldError as exc:
            errors.append(f"{name}: {exc}")
    if errors:
        raise BadData(" ".join(errors))
    return decoded


def _parse_organization_id(raw: str) -> str | None:
    try:
        return types.validate_organization_id(raw)
    except types.FieldError:
        return None


def parse_rfc3339(raw: str) -> datetime | None:
    if not _RFC3339.fullmatch(raw):
        return None
    normalized = raw.replace("t", "T").replace(" ", "T").replace("z", "+00:00").replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(normalized)
    except ValueError:
        return None


def _token_is_valid(request: HttpRequest) -> bool:
    token = settings.PARSEC.administration_token
    if not token:
        return False
    presented = request.headers.get("Authorization", "")
    # Constant time: the comparison must not tell how many leading characters were right.
    return hmac.compare_digest(presented.encode(), f"Bearer {token}".encode())


def administration_view(*methods: str) -> Callable[[View], View]:
    """CSRF-exempt route answering 405 to other methods, then 403 without the token, before anything else."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not _token_is_valid(request):
                return _error(403, "not_allowed")
            try:
                return call_surviving_dead_connections(view, request, *args, **kwargs)
            except BadData as exc:
                return _bad_data(exc.reason)

        return csrf_exempt(require_http_methods(list(methods))(wrapper))

    return decorate


def organization_stats_json(stats: OrganizationStats) -> dict[str, Any]:
    return {
        "active_users": stats.active_users,
        "data_size": stats.data_size,
        "metadata_size": stats.metadata_size,
        "realms": stats.realms,
        "users": stats.users,
        "users_per_profile_detail": [item.as_dict() for item in stats.users_per_profile_detail],
    }


def user_json(user: HumanUserItem) -> dict[str, Any]:
    return {"user_id": user.user_id, "user_email": user.user_email, "user_name": user.user_name, "frozen": user.frozen}


def server_stats_json(all_stats: list[OrganizationStats]) -> dict[str, Any]:
    return {
        "stats": [
            {
                "organization_id": stats.organization_id,
                "data_size": stats.data_size,
                "metadata_size": stats.metadata_size,
                "realms": stats.realms,
                "active_users": stats.active_users,
                "users_per_profile_detail": [item.as_dict() for item in stats.users_per_profile_detail],
            }
            for stats in all_stats
        ]
    }


def server_stats_csv(all_stats: list[OrganizationStats]) -> str:
    """The reference's CSV of `GET /administration/stats`; also the console's download and `server_stats`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for stats in all_stats:
        per_profile = [value for item in stats.users_per_profile_detail for value in (item.active, item.revoked)]
        totals = [stats.data_size, stats.metadata_size, stats.realms, stats.active_users]
        writer.writerow([stats.organization_id, *totals, *per_profile])
    return buffer.getvalue()


# --- views ---------------------------------------------------------------------------------------------------------


@administration_view("POST")
def administration_organization_create(request: HttpRequest) -> HttpResponse:
    body = _load_body(
        request,
        required={"organization_id": types.validate_organization_id},
        optional={
            "user_profile_outsider_allowed": _boolean,
            "active_users_limit": _optional(_non_negative_integer),
            "minimum_archiving_period": _non_negative_integer,
        },
    )
    outcome = services.organization_create(**body)
    if isinstance(outcome, AdministrationError):
        return _error_response(outcome)
    settings_given = {name: value for name, value in body.items() if name != "organization_id"}
    audit.record(actor=audit.API_ACTOR, action=audit.Action.ORGANIZATION_CREATED,
                 organization_id=body["organization_id"], details=settings_given)
    return JsonResponse({"bootstrap_token": outcome.bootstrap_token})


@administration_view("GET", "PATCH")
def administration_organization_item(request: HttpRequest, organization_id: str) -> HttpResponse:
    parsed_id = _parse_organization_id(organization_id)
    organization = None if parsed_id is None else services.organization_get(organization_id=parsed_id)
    if parsed_id is None or organization is None or organization is AdministrationError.NOT_FOUND:
        return _error_response(AdministrationError.NOT_FOUND)

    if request.method == "GET":
        return JsonResponse(
            {
                "active_users_limit": organization.active_users_limit,
                "is_bootstrapped": organization.is_bootstrapped,
                "is_expired": organization.is_expired,
                "minimum_archiving_period": organization.minimum_archiving_period,
                "user_profile_outsider_allowed": organization.user_profile_outsider_allowed,
            }
        )

    body = _load_body(
        request,
        required={},
        optional={
            "is_expired": _boolean,
            "user_profile_outsider_allowed": _boolean,
            "active_users_limit": _optional(_non_negative_integer),
            "minimum_archiving_period": _non_negative_integer,
        },
    )
    outcome = services.organization_update(organization_id=parsed_id, **body)
    if isinstance(outcome, AdministrationError):
        return _error_response(outcome)
    if body:
        audit.record(actor=audit.API_ACTOR, action=audit.organization_patch_action(body), organization_id=parsed_id,
                     details=body)
    return JsonResponse({})


@administration_view("GET")
def administration_organization_stats(request: HttpRequest, organization_id: str) -> HttpResponse:
    parsed_id = _parse_organization_id(organization_id)
    if parsed_id is None:
        return _error_response(AdministrationError.NOT_FOUND)
    outcome = selectors.organization_stats(organization_id=parsed_id)
    if isinstance(outcome, AdministrationError):
        return _error_response(outcome)
    return JsonResponse(organization_stats_json(outcome))


@administration_view("GET")
def administration_server_stats(request: HttpRequest) -> HttpResponse:
    output_format = request.GET.get("format")
    if output_format not in ("csv", "json"):
        return _bad_data("Missing/invalid mandatory query argument `format` (expected `csv` or `json`)")
    raw_at = request.GET.get("at")
    at = None
    if raw_at:
        at = parse_rfc3339(raw_at)
        if at is None:
            return _bad_data("Invalid `at` query argument (expected RFC3339 datetime)")

    all_stats = selectors.server_stats(at=at)

    if output_format == "json":
        return JsonResponse(server_stats_json(all_stats))
    return HttpResponse(server_stats_csv(all_stats), content_type="text/csv")


@administration_view("GET")
def administration_organization_users(request: HttpRequest, organization_id: str) -> HttpResponse:
    parsed_id = _parse_organization_id(organization_id)
    if parsed_id is None:
        return _error_response(AdministrationError.NOT_FOUND)
    outcome = services.organization_users(organization_id=parsed_id)
    if isinstance(outcome, AdministrationError):
        return _error_response(outcome)
    return JsonResponse({"users": [user_json(user) for user in outcome]})


@administration_view("POST")
def administration_user_freeze(request: HttpRequest, organization_id: str) -> HttpResponse:
    body = _load_body(
        request,
        required={"frozen": _boolean},
        optional={"user_id": _optional(types.validate_user_id), "user_email": _optional(_string)},
    )
    # The user id xor e-mail rule is checked before the organization (docs/protocol.md#admin-users).
    target_error = services.user_freeze_target_error(user_id=body.get("user_id"), user_email=body.get("user_email"))
    if target_error is not None:
        return _error_response(target_error)
    parsed_id = _parse_organization_id(organization_id)
    if parsed_id is None:
        return _error_response(AdministrationError.NOT_FOUND)
    outcome = services.user_freeze(
        organization_id=parsed_id,
        frozen=body["frozen"],
        user_id=body.get("user_id"),
        user_email=body.get("user_email"),
    )
    if isinstance(outcome, AdministrationError):
        return _error_response(outcome)
    action = audit.Action.USER_FROZEN if outcome.frozen else audit.Action.USER_UNFROZEN
    audit.record(actor=audit.API_ACTOR, action=action, organization_id=parsed_id,
                 target=f"{outcome.user_id} <{outcome.user_email}>")
    return JsonResponse(
        {
            "frozen": outcome.frozen,
            "user_email": outcome.user_email,
            "user_id": outcome.user_id,
            "user_name": outcome.user_name,
        }
    )


urlpatterns = [
    path("administration/organizations", administration_organization_create),
    path("administration/organizations/<str:organization_id>", administration_organization_item),
    path("administration/organizations/<str:organization_id>/stats", administration_organization_stats),
    path("administration/organizations/<str:organization_id>/users", administration_organization_users),
    path("administration/organizations/<str:organization_id>/users/freeze", administration_user_freeze),
    path("administration/stats", administration_server_stats),
]
