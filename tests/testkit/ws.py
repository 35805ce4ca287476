"""A protocol client for tests: speaks to the ASGI app in-process through Channels' communicator."""
from __future__ import annotations

import uuid
from typing import Any

from channels.testing import WebsocketCommunicator
from nacl.signing import SigningKey

from protocol import codec

DEFAULT_TIMEOUT = 10


class WsClient:
    """One websocket connection to `/ws`, before or after its handshake."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator
        self.challenge: dict[str, Any] | None = None

    @classmethod
    async def connect(cls) -> WsClient:
        from parsec_site.asgi import application

        communicator = WebsocketCommunicator(application, "/ws")
        connected, _ = await communicator.connect(timeout=DEFAULT_TIMEOUT)
        assert connected
        client = cls(communicator)
        client.challenge = await client.receive()
        return client

    async def send(self, message: dict[str, Any]) -> None:
        await self.communicator.send_to(bytes_data=codec.packb(message))

    async def send_raw(self, *, bytes_data: bytes | None = None, text_data: str | None = None) -> None:
        message = {"type": "websocket.receive"}
        if bytes_data is not None:
            message["bytes"] = bytes_data
        if text_data is not None:
            message["text"] = text_data
        await self.communicator.send_input(message)

    async def receive(self, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        message = await self.communicator.receive_output(timeout)
        assert message["type"] == "websocket.send", message
        assert message.get("bytes") is not None, "expected a binary frame"
        return codec.unpackb(message["bytes"])

    async def receive_close(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        message = await self.communicator.receive_output(timeout)
        assert message["type"] == "websocket.close", message
        return message.get("code", 1000)

    async def nothing_received(self, timeout: float = 0.2) -> bool:
        return await self.communicator.receive_nothing(timeout)

    async def command(self, cmd: str, **fields: Any) -> dict[str, Any]:
        await self.send({"cmd": cmd, **fields})
        return await self.receive()

    async def authenticate(
        self,
        *,
        organization_id: str,
        device_id: str,
        signing_key: SigningKey,
        root_verify_key: bytes,
        api_version: tuple[int, int] = (3, 4),
    ) -> dict[str, Any]:
        assert self.challenge is not None
        signed = signing_key.sign(codec.packb({"answer": self.challenge["challenge"], "type": "signed_answer"}))
        await self.send(
            {
                "handshake": "answer",
                "type": "AUTHENTICATED",
                "client_api_version": list(api_version),
                "organization_id": organization_id,
                "device_id": device_id,
                "rvk": root_verify_key,
                "answer": bytes(signed),
            }
        )
        return await self.receive()

    async def invited(
        self, *, organization_id: str, invitation_type: str, token: uuid.UUID, api_version: tuple[int, int] = (3, 4)
    ) -> dict[str, Any]:
        await self.send(
            {
                "handshake": "answer",
                "type": "INVITED",
                "client_api_version": list(api_version),
                "organization_id": organization_id,
                "invitation_type": invitation_type,
                "token": token,
            }
        )
        return await self.receive()

    async def close(self) -> None:
        await self.communicator.disconnect()
