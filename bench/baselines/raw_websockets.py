"""Baseline for ``bench/fanout.py``: a bare websockets server relaying one Redis channel.

Every connected client receives every message PUBLISHed on the channel, unchanged, sent
with :func:`websockets.broadcast` (which encodes each frame once and never waits for a
slow client; it skips one whose write buffer is full). No protocol, no subscriptions, no
routing: this is the floor a Python fan-out server can reach.

Usage: ``python bench/baselines/raw_websockets.py --port 8765 --redis-url URL --channel NAME``
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import redis.asyncio as aioredis
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

CLIENTS: set[ServerConnection] = set()


async def handler(ws: ServerConnection) -> None:
    CLIENTS.add(ws)
    try:
        async for _ in ws:  # clients send nothing; this just waits for the close
            pass
    except ConnectionClosed:
        pass
    finally:
        CLIENTS.discard(ws)


async def relay(redis_url: str, channel: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(channel)
    async for message in pubsub.listen():
        if message["type"] == "message":
            broadcast(CLIENTS, message["data"].decode())


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--channel", default="bench-fanout")
    args = parser.parse_args()
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    relaying = asyncio.create_task(relay(args.redis_url, args.channel))
    async with serve(
        handler, args.host, args.port, compression=None, ping_interval=None, max_queue=16
    ):
        print(f"raw websockets relaying {args.channel} on ws://{args.host}:{args.port}", flush=True)
        await stop
    relaying.cancel()


if __name__ == "__main__":
    asyncio.run(main())
