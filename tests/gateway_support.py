"""Run a real gateway (Sanic, in this process, on a free port) and talk to it over websockets."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import websockets
from sanic import Sanic

from livesync import LiveSync

Sanic.test_mode = True  # many apps per process in tests
TIMEOUT = 5.0 * float(os.environ.get("LIVESYNC_TEST_TIMEOUT_FACTOR", "1"))


@asynccontextmanager
async def running_gateway(live: LiveSync) -> AsyncIterator[int]:
    """Serve ``live.app`` on 127.0.0.1 and yield its port; stop it afterwards."""
    async with running_app(live.app) as port:
        yield port


@asynccontextmanager
async def running_app(app: Any) -> AsyncIterator[int]:
    """Serve any Sanic app on a free port of 127.0.0.1, with its listeners run."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = await app.create_server(sock=sock, return_asyncio_server=True)
    assert server is not None
    await server.startup()
    await server.before_start()
    await server.after_start()
    try:
        yield port
    finally:
        await server.before_stop()
        await server.close()
        await server.after_stop()
        sock.close()


class Client:
    """A minimal protocol client for tests: send messages, receive them as dicts."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def send(self, **message: Any) -> None:
        await self.ws.send(orjson.dumps(message).decode())

    async def recv(self) -> dict[str, Any]:
        data = await asyncio.wait_for(self.ws.recv(), TIMEOUT)
        message: dict[str, Any] = orjson.loads(data)
        return message

    async def recv_type(self, kind: str) -> dict[str, Any]:
        """The next message of ``kind``, skipping server pings."""
        while True:
            message = await self.recv()
            if message["type"] == kind:
                return message
            if message["type"] != "ping":
                raise AssertionError(f"expected {kind}, got {message}")

    async def until(self, kind: str, ref: str) -> list[dict[str, Any]]:
        """Every message (pings skipped) up to and including the ``kind`` whose id is ``ref``."""
        seen: list[dict[str, Any]] = []
        while True:
            message = await self.recv()
            if message["type"] == "ping":
                continue
            seen.append(message)
            if message["type"] == kind and message.get("id") == ref:
                return seen

    async def subscribe(
        self, sub_id: str, pub: str, **extra: Any
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Subscribe; returns (snapshot docs, ready message)."""
        await self.send(type="sub", id=sub_id, pub=pub, **extra)
        docs: list[dict[str, Any]] = []
        while True:
            message = await self.recv()
            if message["type"] == "snap":
                docs.extend(message["docs"])
            elif message["type"] in ("ready", "nosub"):
                return docs, message
            elif message["type"] == "tx" and extra.get("since"):
                docs.append(message)
            else:
                raise AssertionError(f"unexpected {message}")


@asynccontextmanager
async def connected(
    port: int, token: str | None = None, client_id: str | None = None, **headers: str
) -> AsyncIterator[Client]:
    """A handshaken connection; ``client_id`` is sent as ``hello.client`` (write idempotency)."""
    async with websockets.connect(
        f"ws://127.0.0.1:{port}/live", additional_headers=headers or None
    ) as ws:
        client = Client(ws)
        hello: dict[str, Any] = {"type": "hello", "v": [1], "token": token}
        if client_id is not None:
            hello["client"] = client_id
        await client.send(**hello)
        welcome = await client.recv()
        assert welcome["type"] == "welcome", welcome
        yield client
