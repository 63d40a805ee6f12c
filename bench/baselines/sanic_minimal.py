"""Baseline for ``bench/fanout.py``: a minimal Sanic websocket server, for memory.

A bare Sanic app (one process, no workers) with one websocket route, ``/``, that holds
its connection until the client closes it. livesync's gateway is built on Sanic, so RSS
per idle connection of this server is the floor the gateway starts from: what Sanic's
HTTP protocol object and websocket implementation cost before any livesync state.

It also relays one Redis pub/sub channel, the naive Sanic way: every message is sent to
each connection in turn with ``await ws.send(text)`` (Sanic encodes a frame per
connection and waits when a transport's buffer is full). That makes its throughput
comparable to the others, but memory is the point of this baseline.

Usage: ``python bench/baselines/sanic_minimal.py --port 8765 --redis-url URL --channel NAME``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

import redis.asyncio as aioredis
from sanic import Request, Sanic
from sanic.server.websockets.impl import WebsocketImplProtocol

CLIENTS: set[WebsocketImplProtocol] = set()


async def hold(request: Request, ws: WebsocketImplProtocol) -> None:
    """Keep the connection (registered for the relay) until the client closes it."""
    CLIENTS.add(ws)
    try:
        async for _ in ws:  # clients send nothing; this just waits for the close
            pass
    finally:
        CLIENTS.discard(ws)


async def relay(redis_url: str, channel: str) -> None:
    """Send every message on ``channel`` to every connection, one ``send`` at a time."""
    client = aioredis.Redis.from_url(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(channel)
    async for message in pubsub.listen():
        if message["type"] != "message":
            continue
        text = message["data"].decode()
        for ws in list(CLIENTS):
            with contextlib.suppress(Exception):  # closed meanwhile: its handler cleans up
                await ws.send(text)


def build(redis_url: str, channel: str) -> Sanic[Any, Any]:
    app: Sanic[Any, Any] = Sanic("sanic_minimal")
    app.config.MOTD = False
    app.add_websocket_route(hold, "/")

    @app.after_server_start
    async def start_relay(app: Sanic[Any, Any]) -> None:
        app.ctx.relay = asyncio.create_task(relay(redis_url, channel))

    @app.before_server_stop
    async def stop_relay(app: Sanic[Any, Any]) -> None:
        app.ctx.relay.cancel()

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--channel", default="bench-fanout")
    args = parser.parse_args()
    app = build(args.redis_url, args.channel)
    print(f"minimal Sanic relaying {args.channel} on ws://{args.host}:{args.port}", flush=True)
    # Sanic's default backlog (100) is kept: the client swarm opens at most 50 at once.
    app.run(host=args.host, port=args.port, single_process=True, access_log=False)


if __name__ == "__main__":
    main()
