"""Structured logs (docs/configuration.md#options): structlog over the standard library, CONSOLE or JSON, redacted.

Every log line, whether it comes from a structlog logger (`structlog.get_logger("parsec.protocol")`) or
from a standard one (Django, daphne, our `logging.getLogger(__name__)` modules), goes through one
`ProcessorFormatter`: context variables bound for the connection, level, logger name, an ISO 8601 UTC
timestamp, then the redactor, then the renderer. The redactor is the last word before a line is
written: no blob, key, token or e-mail body leaves, whatever a caller passed.
"""
from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

import structlog

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("CONSOLE", "JSON")
REDACTED = "[redacted]"

# Keys whose value never appears, whatever its type.
SENSITIVE_KEYS = frozenset({
    "authorization", "blob", "block", "body", "bootstrap_token", "certificate", "cookie", "data", "dsn",
    "email_body", "key", "password", "payload", "private_key", "secret", "signing_key", "token",
})
SENSITIVE_SUFFIXES = ("_token", "_password", "_secret", "_key", "_certificate", "_blob", "_payload", "_body")
PASSTHROUGH_KEYS = frozenset({"exc_info", "stack_info"})
# Shorter configured values would blank out common words in unrelated lines.
MIN_SECRET_LENGTH = 6


def _is_sensitive_key(key: str) -> bool:
    lowered = key.lower()
    return lowered in SENSITIVE_KEYS or lowered.endswith(SENSITIVE_SUFFIXES)


class Redactor:
    """A structlog processor: hides sensitive keys, binary values and every registered secret value."""

    def __init__(self) -> None:
        self._secrets: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def register(self, *values: str | None) -> None:
        """Values that must never be written (tokens, passwords...): replaced wherever they appear."""
        with self._lock:
            known = set(self._secrets)
            known.update(value for value in values if value and len(value) >= MIN_SECRET_LENGTH)
            # Longest first: a secret containing another is hidden whole.
            self._secrets = tuple(sorted(known, key=len, reverse=True))

    def clear(self) -> None:
        with self._lock:
            self._secrets = ()

    def scrub_text(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def scrub_value(self, value: Any) -> Any:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return f"<{len(value)} bytes>"
        if isinstance(value, str):
            return self.scrub_text(value)
        if isinstance(value, (int, float, bool)) or value is None:
            return value
        return self.scrub_text(str(value))

    def __call__(self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key, value in list(event_dict.items()):
            if key.startswith("_") or key in PASSTHROUGH_KEYS:
                continue  # structlog's own bookkeeping, and exceptions not rendered yet
            if _is_sensitive_key(key):
                event_dict[key] = REDACTED
            else:
                event_dict[key] = self.scrub_value(value)
        return event_dict


# One per process: settings register the configured secrets, Sentry's scrubber reuses it.
REDACTOR = Redactor()


def configured_secrets(config: Any) -> list[str]:
    """The secret values of a `ServerConfig`: tokens, passwords, credentials inside URLs and blockstores."""
    found: list[str | None] = []
    for name in ("administration_token", "email_host_password", "metrics_token"):
        found.append(getattr(config, name, None))
    for name in ("db_url", "redis_url", "sentry_dsn"):
        url = getattr(config, name, None)
        if url and "://" in url:
            parts = urlsplit(url)
            found.extend([parts.password, parts.username if name == "sentry_dsn" else None])
    found.extend(_blockstore_secrets(getattr(config, "blockstore_config", None)))
    return [value for value in found if value]


def _blockstore_secrets(store: Any) -> Iterable[str]:
    if store is None:
        return []
    nodes = getattr(store, "nodes", None)
    if nodes is not None:
        return [secret for node in nodes for secret in _blockstore_secrets(node)]
    return [getattr(store, name) for name in ("key", "secret", "password") if getattr(store, name, None)]


def _add_process_id(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # With --workers, tells apart the lines of the processes sharing one log.
    record = event_dict.get("_record")
    event_dict.setdefault("pid", record.process if record is not None else None)
    return event_dict


_UNSAFE_CONSOLE = re.compile(r"[\r\n]")


def _one_line_event(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # A value with a newline would forge a second log line in CONSOLE output.
    event = event_dict.get("event")
    if isinstance(event, str) and _UNSAFE_CONSOLE.search(event):
        event_dict["event"] = _UNSAFE_CONSOLE.sub(" ", event)
    return event_dict


def shared_processors() -> list[Any]:
    """What every line gets, before rendering, whether it comes from structlog or the standard library."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def formatter_processors(log_format: str) -> list[Any]:
    if log_format == "JSON":
        renderer: Any = structlog.processors.JSONRenderer(default=str)
        extra: list[Any] = [_add_process_id]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False, pad_event_to=0, pad_level=False, sort_keys=False)
        extra = [_one_line_event]
    return [
        *extra,
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        structlog.processors.StackInfoRenderer(),
        # Tracebacks become a string here, so the redactor sees them too.
        structlog.processors.format_exc_info,
        structlog.processors.UnicodeDecoder(),
        REDACTOR,
        renderer,
    ]


def logging_config(*, level: str, log_format: str, log_file: str | None) -> dict[str, Any]:
    """Django's LOGGING: one handler (stderr or a file) with the structlog formatter, for every logger."""
    if level not in LOG_LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}")
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}")
    handler: dict[str, Any] = {"formatter": "parsec"}
    if log_file is None:
        handler["class"] = "logging.StreamHandler"
    else:
        # Reopens the file when logrotate moves it; each line is one append, so workers may share it.
        handler.update({"class": "logging.handlers.WatchedFileHandler", "filename": log_file, "encoding": "utf-8"})
    numeric_level = logging.getLevelNamesMapping()[level]
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "parsec": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": formatter_processors(log_format),
                "foreign_pre_chain": shared_processors(),
            },
        },
        "handlers": {"parsec": handler},
        "root": {"handlers": ["parsec"], "level": level},
        "loggers": {
            # daphne's INFO lines repeat our start line; its warnings and errors stay.
            "daphne": {"level": "DEBUG" if level == "DEBUG" else logging.getLevelName(max(logging.WARNING, numeric_level))},
            # Our access log line replaces Django's "Not Found: /path" warnings.
            "django.request": {"level": "ERROR"},
        },
    }


def configure_structlog() -> None:
    """structlog loggers hand their event dicts to the standard library, formatted by `logging_config`."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            # Also before the standard library sees the event: Sentry's logging integration reads records.
            REDACTOR,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
