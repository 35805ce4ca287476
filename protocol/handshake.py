"""The websocket handshake of docs/protocol.md#handshake: challenge, answer parsing, identity checks."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from protocol import codec, types
from protocol.replies import BALLPARK_CLIENT_EARLY_OFFSET, BALLPARK_CLIENT_LATE_OFFSET

SUPPORTED_API_VERSIONS: tuple[tuple[int, int], ...] = ((1, 3), (2, 10), (3, 4))
# Clients from 2.5 on sign a `signed_answer` map; older 2.x ones sign the raw challenge.
SIGNED_ANSWER_SINCE = (2, 5)

HELP_INVALID_IDENTITY = "Invalid handshake information"
HELP_INVITATION_DELETED = "Invalid handshake: Invitation already deleted"
HELP_INVITATION_NOT_FOUND = "Invalid handshake: Invitation not found"
HELP_BAD_ADMINISTRATION_TOKEN = "Invalid administration token"


class HandshakeFailed(Exception):
    def __init__(self, result: str, help: str) -> None:
        super().__init__(f"{result}: {help}")
        self.result = result
        self.help = help


def bad_protocol(help: str) -> HandshakeFailed:
    return HandshakeFailed("bad_protocol", help)


def server_api_version(client: tuple[int, int]) -> str:
    """The server's version in the client's major, as the handshake settles it."""
    return next(f"{major}.{minor}" for major, minor in SUPPORTED_API_VERSIONS if major == client[0])


def challenge_message(challenge: bytes, now: datetime) -> bytes:
    return codec.packb(
        {
            "backend_timestamp": now,
            "ballpark_client_early_offset": BALLPARK_CLIENT_EARLY_OFFSET,
            "ballpark_client_late_offset": BALLPARK_CLIENT_LATE_OFFSET,
            "challenge": challenge,
            "handshake": "challenge",
            "supported_api_versions": [list(v) for v in SUPPORTED_API_VERSIONS],
        }
    )


def result_message(result: str, help: str | None = None) -> bytes:
    message: dict[str, Any] = {"handshake": "result", "result": result}
    if help is not None:
        message["help"] = help
    return codec.packb(message)


OK_RESULT = result_message("ok")


@dataclass(frozen=True)
class AuthenticatedAnswer:
    api_version: tuple[int, int]
    organization_id: str
    device_id: str
    rvk: bytes
    answer: bytes


@dataclass(frozen=True)
class InvitedAnswer:
    api_version: tuple[int, int]
    organization_id: str
    invitation_type: str
    token: uuid.UUID


@dataclass(frozen=True)
class LegacyAnonymousAnswer:
    """API v1 `anonymous` handshake: what the 2.0-2.5 clients use to bootstrap an organization."""

    api_version: tuple[int, int]
    organization_id: str
    rvk: bytes | None


@dataclass(frozen=True)
class LegacyAdministrationAnswer:
    """API v1 `administration` handshake: what the 2.0 CLI's `create_organization` uses."""

    api_version: tuple[int, int]
    token: str = field(repr=False)


_LEGACY_ANONYMOUS_FIELDS = {"organization_id": types.OrganizationID, "rvk": types.Optional(types.VerifyKey)}
_LEGACY_ADMINISTRATION_FIELDS = {"token": types.String}

_AUTHENTICATED_FIELDS = {
    "organization_id": types.OrganizationID,
    "device_id": types.DeviceID,
    "rvk": types.VerifyKey,
    "answer": types.Bytes,
}
_INVITED_FIELDS = {
    "organization_id": types.OrganizationID,
    "invitation_type": types.InvitationTypeField,
    "token": types.InvitationToken,
}


def _format_versions(versions: list[tuple[int, int]]) -> str:
    return "{" + ", ".join(f"{major}.{minor}" for major, minor in versions) + "}"


def parse_answer(
    frame: bytes | None,
) -> AuthenticatedAnswer | InvitedAnswer | LegacyAnonymousAnswer | LegacyAdministrationAnswer:
    if frame is None:
        raise bad_protocol("Expected bytes message in websocket")
    try:
        raw = codec.unpackb(frame)
    except codec.DecodeError as exc:
        raise bad_protocol(f"Invalid message: {exc}") from None
    if not isinstance(raw, dict) or raw.get("handshake") != "answer":
        raise bad_protocol("Invalid message: expected a map with `handshake: answer`")
    version = raw.get("client_api_version")
    if (
        not isinstance(version, (list, tuple))
        or len(version) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in version)
    ):
        raise bad_protocol("Invalid message: `client_api_version` must be two non-negative integers")
    api_version = (version[0], version[1])
    if api_version[0] not in {major for major, _ in SUPPORTED_API_VERSIONS}:
        raise bad_protocol(
            f"No overlap between client API versions {_format_versions([api_version])} "
            f"and backend API versions {_format_versions(list(SUPPORTED_API_VERSIONS))}"
        )
    kind = raw.get("type")
    if api_version[0] == 1:
        return _parse_legacy_answer(api_version, kind, raw)
    try:
        if kind == "AUTHENTICATED":
            fields = types.decode_request(_AUTHENTICATED_FIELDS, raw)
            return AuthenticatedAnswer(api_version=api_version, **fields)
        if kind == "INVITED":
            fields = types.decode_request(_INVITED_FIELDS, raw)
            return InvitedAnswer(api_version=api_version, **fields)
    except types.FieldError as exc:
        raise bad_protocol(f"Invalid message: {exc}") from None
    raise bad_protocol("Invalid message: `type` must be AUTHENTICATED or INVITED")


def _parse_legacy_answer(
    api_version: tuple[int, int], kind: Any, raw: dict[str, Any]
) -> LegacyAnonymousAnswer | LegacyAdministrationAnswer:
    # Only the two sides of API v1 that the 2.0-2.5 clients still use (creating and bootstrapping
    # an organization); their devices log in with the API v2 handshake.
    try:
        if kind == "anonymous":
            # The 2.0 client omits `rvk` when bootstrapping (it has no root key yet), or sends nil.
            fields = types.decode_request(_LEGACY_ANONYMOUS_FIELDS, {"rvk": None, **raw})
            return LegacyAnonymousAnswer(api_version=api_version, **fields)
        if kind == "administration":
            fields = types.decode_request(_LEGACY_ADMINISTRATION_FIELDS, raw)
            return LegacyAdministrationAnswer(api_version=api_version, **fields)
    except types.FieldError as exc:
        raise bad_protocol(f"Invalid message: {exc}") from None
    raise bad_protocol("Invalid message: API v1 is served for the `anonymous` and `administration` handshakes only")


def check_signed_answer(answer: AuthenticatedAnswer, verify_key: bytes, challenge: bytes) -> None:
    try:
        signed_message = VerifyKey(verify_key).verify(answer.answer)
    except (BadSignatureError, ValueError):
        raise bad_protocol("Invalid answer signature") from None
    if (answer.api_version[0] == 2 and answer.api_version < SIGNED_ANSWER_SINCE) or answer.api_version[0] < 2:
        returned: bytes | None = signed_message
    else:
        try:
            payload = codec.unpackb(signed_message)
        except codec.DecodeError as exc:
            raise bad_protocol(f"Invalid signed answer: {exc}") from None
        if not isinstance(payload, dict) or payload.get("type") != "signed_answer":
            raise bad_protocol("Invalid signed answer: expected `type: signed_answer`")
        returned = payload.get("answer")
    if returned != challenge:
        raise bad_protocol("Invalid returned challenge")
