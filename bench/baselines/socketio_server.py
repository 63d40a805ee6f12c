"""Baseline for ``bench/fanout.py``: a python-socketio server fed by its Redis manager.

A ``socketio.AsyncServer`` (ASGI, served by uvicorn, one process) whose client manager is
``socketio.AsyncRedisManager(redis_url, channel=...)``. The writer publishes with
``socketio.RedisManager(redis_url, channel=..., write_only=True).emit("tx", frame)``; the
manager of this server receives that on the Redis channel and emits the event ``tx`` to
every client connected to the default namespace. No handlers, no rooms, no auth: the
usual way a Python application broadcasts through Socket.IO to a horizontally scaled
server, measured as a second baseline next to the bare websockets relay.

Not a project dependency: ``pip install python-socketio uvicorn`` in the venv.

Usage: ``python bench/baselines/socketio_server.py --port 8765 --redis-url URL --channel NAME``
(the channel also from ``LIVESYNC_BENCH_SOCKETIO_CHANNEL``; default ``socketio``).
"""

from __future__ import annotations

import argparse
import os

import socketio
import uvicorn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument(
        "--channel", default=os.environ.get("LIVESYNC_BENCH_SOCKETIO_CHANNEL", "socketio")
    )
    parser.add_argument(
        "--ping-interval", type=float, default=25.0, help="engine.io ping interval (s)"
    )
    args = parser.parse_args()
    manager = socketio.AsyncRedisManager(args.redis_url, channel=args.channel)
    sio = socketio.AsyncServer(
        async_mode="asgi", client_manager=manager, ping_interval=args.ping_interval
    )
    app = socketio.ASGIApp(sio)
    print(
        f"python-socketio relaying {args.channel} on "
        f"ws://{args.host}:{args.port}/socket.io/?EIO=4&transport=websocket",
        flush=True,
    )
    # uvicorn stops cleanly on SIGINT / SIGTERM.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=2,
    )


if __name__ == "__main__":
    main()
