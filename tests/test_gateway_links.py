"""The gateway's connections after the take-over from Sanic: handshake, keepalive, batching.

The gateway answers the websocket handshake itself and owns the transport from then on
(``livesync/server/upgrade.py``, ``link.py``); one timer pings every connection and closes
the silent ones; change sets read together are written together, one write per
connection (``fanout.py``). These tests hold each of those to the old guarantees.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from typing import Any

import orjson
import pytest
import websockets
from sqlalchemy import select

from livesync.brokers import Position
from livesync.publications import Context
from livesync.server.hub import Hub
from tests.conftest import make_live
from tests.gateway_support import TIMEOUT, connected, running_gateway
from tests.models import Item


def write(live: Any, *items: Item) -> None:
    with live.sessionmaker() as s:
        s.add_all(items)
        s.commit()


async def test_one_timer_closes_the_silent_connection_and_keeps_the_live_one(
    database_url: str,
) -> None:
    live = make_live(database_url, ping_interval=0.1, ping_timeout=0.6)
    live.collection(Item, publish=True)
    try:
        async with (
            running_gateway(live) as port,
            connected(port) as silent,
            connected(port) as alive,
        ):

            async def answer() -> None:  # what the JS client does: pong every ping
                while True:
                    message = orjson.loads(await alive.ws.recv())
                    if message["type"] == "ping":
                        await alive.send(type="pong")

            answering = asyncio.create_task(answer())
            try:
                with pytest.raises(websockets.ConnectionClosed) as info:
                    while True:  # never answer
                        await asyncio.wait_for(silent.ws.recv(), TIMEOUT)
                assert info.value.rcvd is not None and info.value.rcvd.code == 4002
                await asyncio.sleep(1.0)  # well past the timeout: the answering one stays
                assert not answering.done()
                assert live.app.ctx.gateway.connections == 1
            finally:
                answering.cancel()
    finally:
        live.close()


async def test_a_dead_peer_is_closed_and_forgotten(database_url: str) -> None:
    """A peer that stops reading and sending (a dead host) still goes: the shared timer
    closes it, and without its close answer the transport is aborted."""
    live = make_live(database_url, ping_interval=0.1, ping_timeout=0.4)
    live.collection(Item, publish=True)
    try:
        async with running_gateway(live) as port, connected(port) as client:
            gateway = live.app.ctx.gateway
            assert gateway.connections == 1
            client.ws.transport.pause_reading()  # no more reads, no pongs, no close answer
            deadline = asyncio.get_running_loop().time() + TIMEOUT + 6
            while gateway.connections and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            assert gateway.connections == 0
            client.ws.transport.abort()
    finally:
        live.close()


async def test_messages_sent_right_behind_the_handshake_are_not_lost(database_url: str) -> None:
    """A client may pipeline frames behind its upgrade request; the take-over hands
    whatever Sanic had already read to the connection."""
    live = make_live(database_url, ping_interval=30.0)
    live.collection(Item, publish=True)
    try:
        async with running_gateway(live) as port:
            key = base64.b64encode(os.urandom(16)).decode()
            request = (
                f"GET /live HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
            hello = _masked_text(orjson.dumps({"type": "hello", "v": [1]}))
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request + hello)  # one segment: the hello behind the request
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
            assert head.startswith(b"HTTP/1.1 101")
            first = await asyncio.wait_for(reader.readexactly(2), TIMEOUT)
            length = first[1] & 0x7F
            if length == 126:
                length = int.from_bytes(await reader.readexactly(2), "big")
            body = await asyncio.wait_for(reader.readexactly(length), TIMEOUT)
            assert orjson.loads(body)["type"] == "welcome"
            writer.close()
    finally:
        live.close()


def _masked_text(payload: bytes) -> bytes:
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes((0x81, 0x80 | len(payload))) + mask + masked


async def test_a_plain_request_to_the_socket_is_told_to_upgrade(database_url: str) -> None:
    live = make_live(database_url, ping_interval=30.0)
    live.collection(Item, publish=True)
    try:
        async with running_gateway(live) as port:

            def get() -> bytes:
                with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
                    sock.sendall(b"GET /live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    return sock.recv(100)

            assert (await asyncio.to_thread(get)).startswith(b"HTTP/1.1 426")
    finally:
        live.close()


async def test_a_batch_keeps_every_connections_order(database_url: str) -> None:
    """Change sets read together are written together: a one-key connection gets the
    key's shared bytes, a two-key one its own frames, each in log order."""
    live = make_live(database_url, ping_interval=30.0)
    live.collection(Item, publish=True)

    @live.publication("items_min_qty")
    def items_min_qty(ctx: Context, min_qty: int) -> Any:
        return select(Item).where(Item.qty >= min_qty)

    try:
        async with running_gateway(live) as port:
            hub: Hub = live.app.ctx.gateway.hub
            async with connected(port) as solo, connected(port) as mixed:
                await solo.subscribe("all", "t_items")
                await mixed.subscribe("all", "t_items")
                await mixed.subscribe("big", "items_min_qty", params={"min_qty": 5})
                # Hold the hub back so that the next writes are read as one batch.
                start = hub.position.offset
                task = hub._task
                assert task is not None
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                for i in range(1, 6):
                    await asyncio.to_thread(write, live, Item(id=i, title="t", qty=i * 2))
                topic = live.settings.topic
                entries = await live.broker.read(topic, Position(hub.position.epoch, start))
                assert len(entries) == 5
                hub._deliver_batch(entries)
                for client, parts_per_tx in ((solo, [1] * 5), (mixed, [1, 1, 2, 2, 2])):
                    seen = [await client.recv_type("tx") for _ in range(5)]
                    assert [tx["pos"] for tx in seen] == [e.offset for e in entries]
                    assert [len(tx["parts"]) for tx in seen] == parts_per_tx
                    ids = [c["id"] for tx in seen for c in tx["parts"][0]["ch"]]
                    assert ids == ["1", "2", "3", "4", "5"]
                assert hub.stats.frames_out >= 10
    finally:
        live.close()
