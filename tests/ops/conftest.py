"""Helpers of the operations tests: log capture in the server's own formats, metric readings."""
from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import structlog
from prometheus_client import REGISTRY

from parsec_site.logging import configure_structlog, formatter_processors, shared_processors

if not structlog.is_configured():
    configure_structlog()  # settings do it for the server; here too when they do not


class CapturedLogs:
    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        """Every line, parsed: each must be one JSON object."""
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == event]


@contextmanager
def capture_logs(log_format: str = "JSON", level: int = logging.INFO) -> Iterator[CapturedLogs]:
    """What the server would write, through the same formatter as `logging_config`."""
    # Its first import runs django.setup() again, whose logging configuration drops extra handlers.
    import parsec_site.asgi  # noqa: F401

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=formatter_processors(log_format), foreign_pre_chain=shared_processors(),
    ))
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield CapturedLogs(stream)
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)


@pytest.fixture
def logs() -> Iterator[CapturedLogs]:
    with capture_logs() as captured:
        yield captured


def metric(name: str, **labels: str) -> float:
    """A sample's current value in this process (0 when it was never set)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0
