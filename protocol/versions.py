"""API versions of the official 2.x clients (per release range), and helpers to read and print them.

Each client speaks one API version per major (2.0 … 2.10, 3.0 … 3.4) and omits the request fields
added after it (the schemas' `introduced_in`, docs/protocol.md#introduced-in, declared with `types.Introduced`).
The version negotiated at the handshake is the session's `api_version`.
"""
from __future__ import annotations

ApiVersion = tuple[int, int]

# The API version each official client release negotiates with a server offering 2.10 and 3.4
# (read from each release's `parsec/api/version.py`; 2.0 and 2.1-2.8 speak major 2 only).
CLIENT_API_VERSIONS: tuple[tuple[str, ApiVersion], ...] = (
    ("2.0", (2, 0)),
    ("2.1-2.3", (2, 1)),
    ("2.4-2.5", (2, 2)),
    ("2.6", (2, 3)),
    ("2.7", (2, 5)),
    ("2.8", (2, 6)),
    ("2.9", (3, 0)),
    ("2.10", (3, 1)),
    ("2.11-2.15", (3, 2)),
    ("2.16-2.17", (3, 4)),
)


def parse(text: str) -> ApiVersion:
    major, _, minor = text.partition(".")
    return int(major), int(minor)


def format_version(version: ApiVersion) -> str:
    return f"{version[0]}.{version[1]}"
