"""The public `parsec://` address of this server (`--backend-addr`), parsed once and used to write links."""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class BackendAddr:
    """The public `parsec://host[:port][?no_ssl=true]` address of this server."""

    hostname: str
    port: int
    use_ssl: bool

    @classmethod
    def parse(cls, url: str) -> BackendAddr:
        parts = urlsplit(url)
        if parts.scheme != "parsec" or not parts.hostname or parts.path not in ("", "/"):
            raise ValueError("expected parsec://<host>[:<port>][?no_ssl=true]")
        no_ssl_values = parse_qs(parts.query).get("no_ssl", [])
        if len(no_ssl_values) > 1 or (no_ssl_values and no_ssl_values[0] not in ("true", "false")):
            raise ValueError("`no_ssl` must be given at most once, as `true` or `false`")
        use_ssl = no_ssl_values != ["true"]
        port = parts.port or (443 if use_ssl else 80)
        return cls(hostname=parts.hostname, port=port, use_ssl=use_ssl)

    @property
    def netloc(self) -> str:
        default_port = 443 if self.use_ssl else 80
        return self.hostname if self.port == default_port else f"{self.hostname}:{self.port}"

    def to_url(self, path: str = "", query: str = "") -> str:
        """`parsec://` URL, with `no_ssl=true` first in the query as the client writes it."""
        params = [] if self.use_ssl else ["no_ssl=true"]
        if query:
            params.append(query)
        suffix = f"?{'&'.join(params)}" if params else ""
        return f"parsec://{self.netloc}{path}{suffix}"

    def to_http_url(self, path: str = "") -> str:
        scheme = "https" if self.use_ssl else "http"
        return f"{scheme}://{self.netloc}{path}"
