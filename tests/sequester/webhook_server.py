"""A real HTTP server on localhost standing for a sequester webhook service (no Django: interop uses it too)."""
from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlparse


@dataclass
class WebhookServer:
    """A real HTTP server on localhost that answers sequester POSTs as told."""

    status: int = 200
    body: bytes = b""
    delay: float = 0.0
    received: list[tuple[dict[str, list[str]], bytes]] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's naming
                length = int(self.headers.get("Content-Length", "0"))
                data = self.rfile.read(length)
                outer.received.append((parse_qs(urlparse(self.path).query), data))
                if outer.delay:
                    time.sleep(outer.delay)
                self.send_response(outer.status)
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/sequester"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def refuse(self, reason: str | None, *, status: int = 400) -> None:
        self.status = status
        self.body = b"not json" if reason is None else json.dumps({"reason": reason}).encode()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def unreachable_url() -> str:
    """A localhost port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/sequester"
