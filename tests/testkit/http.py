"""A client of the invited/authenticated HTTP routes and of the SSE stream, in-process through Channels' communicators."""
from __future__ import annotations

import base64
from typing import Any

from channels.testing import ApplicationCommunicator, HttpCommunicator

from protocol import codec

DEFAULT_TIMEOUT = 10


def signed_headers(device: Any, body: bytes) -> dict[str, str]:
    """The 2.17 oxidized client's authentication headers: the device signs the raw body."""
    return {
        "Authorization": "PARSEC-SIGN-ED25519",
        "Author": base64.b64encode(device.device_id.encode()).decode(),
        "Signature": base64.b64encode(device.signing_key.sign(body).signature).decode(),
    }


async def http(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
               timeout: float = DEFAULT_TIMEOUT, server_port: int | None = None,
               until_done: bool = False) -> dict[str, Any]:
    """The response; with `until_done`, returned once the application has also ended (what it releases after
    sending the response, e.g. its connection slot, is then released)."""
    from parsec_site.asgi import application

    raw = [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    communicator = HttpCommunicator(application, method, path, body=body, headers=raw) if server_port is None \
        else _OnPort(application, method, path, body, raw, server_port)
    response = await communicator.get_response(timeout)
    if until_done:
        await communicator.wait(timeout)
    response["headers"] = {name.decode().lower(): value.decode() for name, value in response["headers"]}
    return response


async def authenticated(device: Any, request: dict[str, Any] | bytes, *, headers: dict[str, str] | None = None,
                        organization_id: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                        until_done: bool = False) -> dict[str, Any]:
    body = request if isinstance(request, bytes) else codec.packb(request)
    all_headers = {"Content-Type": "application/msgpack", "Api-Version": "3.4", **signed_headers(device, body)}
    all_headers.update(headers or {})
    all_headers = {name: value for name, value in all_headers.items() if value is not None}
    return await http("POST", f"/authenticated/{organization_id or device.organization_id}", body, all_headers,
                      timeout, until_done=until_done)


async def invited(organization_id: str, token: Any, request: dict[str, Any] | bytes, *,
                  headers: dict[str, str] | None = None, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    body = request if isinstance(request, bytes) else codec.packb(request)
    all_headers = {"Content-Type": "application/msgpack", "Api-Version": "3.4",
                   "Invitation-Token": getattr(token, "hex", token)}
    all_headers.update(headers or {})
    all_headers = {name: value for name, value in all_headers.items() if value is not None}
    return await http("POST", f"/invited/{organization_id}", body, all_headers, timeout)


def reply(response: dict[str, Any]) -> dict[str, Any]:
    assert response["status"] == 200, response
    assert response["headers"]["content-type"] == "application/msgpack"
    return codec.unpackb(response["body"])


class _OnPort(HttpCommunicator):
    """A request that came in on a given port (`--admin-port`): HttpCommunicator's scope has no `server`."""

    def __init__(self, application: Any, method: str, path: str, body: bytes, headers: list, port: int) -> None:
        ApplicationCommunicator.__init__(self, application, {
            "type": "http", "http_version": "1.1", "method": method, "path": path, "raw_path": path.encode(),
            "query_string": b"", "headers": headers, "scheme": "http", "server": ("127.0.0.1", port),
        })
        self.body = body
        self.sent_request = False


class SseClient:
    """One `GET /authenticated/<org>/events`, read chunk by chunk."""

    def __init__(self, communicator: ApplicationCommunicator) -> None:
        self.communicator = communicator
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.buffer = b""
        self.ended = False

    @classmethod
    async def open(cls, device: Any, *, headers: dict[str, str] | None = None) -> SseClient:
        from parsec_site.asgi import application

        all_headers = {"Accept": "text/event-stream", "Api-Version": "3.4", **signed_headers(device, b"")}
        all_headers.update(headers or {})
        path = f"/authenticated/{device.organization_id}/events"
        scope = {
            "type": "http", "http_version": "1.1", "method": "GET", "path": path, "raw_path": path.encode(),
            "query_string": b"", "scheme": "http",
            "headers": [(k.lower().encode(), v.encode()) for k, v in all_headers.items() if v is not None],
        }
        client = cls(ApplicationCommunicator(application, scope))
        await client.communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
        start = await client.communicator.receive_output(DEFAULT_TIMEOUT)
        assert start["type"] == "http.response.start", start
        client.status = start["status"]
        client.headers = {k.decode().lower(): v.decode() for k, v in start.get("headers", [])}
        return client

    async def message(self, timeout: float = DEFAULT_TIMEOUT) -> dict[str, str] | None:
        """The next SSE message as its fields (a comment as `{"comment": ...}`); None once the response ended."""
        while b"\n\n" not in self.buffer:
            if self.ended:
                return None
            out = await self.communicator.receive_output(timeout)
            assert out["type"] == "http.response.body", out
            self.buffer += out.get("body", b"")
            if not out.get("more_body", False):
                self.ended = True
        raw, self.buffer = self.buffer.split(b"\n\n", 1)
        fields: dict[str, str] = {}
        for line in raw.decode().split("\n"):
            name, _, value = line.partition(":")
            fields["comment" if name == "" else name] = value
        return fields

    async def event(self, timeout: float = DEFAULT_TIMEOUT) -> tuple[str, dict[str, Any]]:
        """The next event (keepalives skipped): its id and the decoded `events_listen` reply."""
        while True:
            message = await self.message(timeout)
            assert message is not None, "the stream ended"
            if "data" in message and "id" in message:
                return message["id"], codec.unpackb(base64.b64decode(message["data"]))

    async def close(self) -> None:
        if self.communicator.future.done():
            return  # a read that timed out has already cancelled the request
        await self.communicator.send_input({"type": "http.disconnect"})
        try:
            await self.communicator.wait(1)
        except TimeoutError:
            pass
