"""The servers the fan-out benchmarks measure, and the writers that feed them.

Each :class:`Server` is a process started fresh per measurement (:func:`running`), with a
``write`` that stores the current time in what it publishes: livesync (an ORM UPDATE on
PostgreSQL, published through Redis), and the baselines (a raw websockets relay,
python-socketio, Django Channels, a minimal Sanic app), which publish the same frame to
Redis directly. :func:`write_for` and :func:`write_parallel` drive them at a steady rate
or as fast as possible. ``bench.fanout``, ``bench.filtered`` and ``bench.scaleout`` use
them.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import redis

from bench.procs import (
    delete_topic_keys,
    free_port,
    http_ok,
    stop_process,
    tcp_open,
    wait_until,
)

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
POSTGRES_URL = os.environ.get(
    "LIVESYNC_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
# Database 14: the test suite uses 15.
REDIS_URL = os.environ.get("LIVESYNC_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
ROWS = 10  # rows the livesync writer cycles through (the snapshot every client reads)
# One topic per invocation: the writer's LiveSync (bench.fanout_app) is built once, at import.
RUN_ID = uuid.uuid4().hex[:8]


def app_env(name: str) -> dict[str, str]:
    """The LIVESYNC_* variables of ``bench/<name>_app.py``: this run's services, its own topic."""
    return {
        "LIVESYNC_DATABASE_URL": POSTGRES_URL,
        "LIVESYNC_BROKER_URL": REDIS_URL,
        "LIVESYNC_TOPIC": f"bench-{name}-{RUN_ID}",
    }


def load_app(name: str) -> ModuleType:
    """Import ``bench.<name>_app`` configured by :func:`app_env` (its ``LiveSync``, the
    writer's, reads the variables at import; the gateway processes started later inherit
    them)."""
    os.environ.update(app_env(name))
    return importlib.import_module(f"bench.{name}_app")


class Server:
    """A server process under test and a writer feeding it."""

    name = ""
    mode = ""  # the swarm's --mode
    proc: subprocess.Popen[Any]
    url: str

    def write(self, slot: int = 0) -> float:
        """One write carrying the current time; returns the commit/publish duration (s).

        Concurrent writers pass distinct ``slot`` numbers (livesync: the row they update).
        """
        raise NotImplementedError

    def extra(self) -> dict[str, Any]:
        return {}


class LiveSyncServer(Server):
    name, mode = "livesync", "livesync"

    def __init__(self, topic: str) -> None:
        env = {**app_env("fanout"), "LIVESYNC_TOPIC": topic}
        os.environ.update(env)  # the writer's LiveSync (bench.fanout_app) reads them too
        sys.path.insert(0, str(ROOT))
        from sqlalchemy import inspect

        from bench import fanout_app
        from livesync.outbox import OUTBOX_TABLE

        self.app = fanout_app
        self.live = fanout_app.live
        self.topic = topic
        engine = self.live.engine
        if not inspect(engine).has_table(OUTBOX_TABLE):
            self.live.upgrade()
        table = fanout_app.FanoutItem.__table__
        table.drop(engine, checkfirst=True)
        table.create(engine)
        with self.live.sessionmaker() as session, session.begin():
            session.add_all(
                fanout_app.FanoutItem(id=i, name=f"item {i}", data={"t": 0}) for i in range(ROWS)
            )
        self.live._publisher.flush()
        self.counter = 0
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/live"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "livesync.cli", "serve", "bench.fanout_app:live",
             "--port", str(self.port)],
            cwd=ROOT, env={**os.environ, **env},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        health = f"http://127.0.0.1:{self.port}/healthz"
        wait_until(lambda: http_ok(health), 30, "livesync serve", self.proc)

    def write(self, slot: int = 0) -> float:
        item_id = slot % ROWS  # one row per writer thread: no optimistic-version conflicts
        with self.live.sessionmaker() as session:
            item = session.get(self.app.FanoutItem, item_id)
            t = time.time()
            item.data = {"t": t}
            session.commit()
        return time.time() - t

    def metrics(self) -> dict[str, float]:
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=20) as response:
            lines = response.read().decode().splitlines()
        return {
            name: float(value)
            for name, value in (line.split() for line in lines if not line.startswith("#"))
        }

    def extra(self) -> dict[str, Any]:
        try:
            return {"metrics": self.metrics()}
        except OSError as exc:  # a saturated event loop answers HTTP late, or not at all
            return {"metrics": f"unavailable: {exc}"}

    def close(self) -> None:
        stop_process(self.proc)
        self.live._publisher.flush()
        engine = self.live.engine
        self.app.FanoutItem.__table__.drop(engine, checkfirst=True)
        delete_topic_keys(REDIS_URL, self.topic)  # the change log and the gateway's push topic


def baseline_frame(n: int, t: float) -> dict[str, Any]:
    """What the baselines deliver: the shape and about the size of livesync's frame for one
    updated row, plus the writer's time ``t``."""
    change = {"c": "bench_fanout_items", "id": str(n % ROWS), "op": "patch", "v": n + 1,
              "pv": n, "p": [{"op": "replace", "path": "/data/t", "value": t}]}  # fmt: skip
    parts = [{"key": "0123456789abcdef", "ch": [change]}]
    return {"type": "tx", "pos": n, "parts": parts, "t": t}


class RawServer(Server):
    """The bare websockets relay (``bench/baselines/raw_websockets.py``); the writer
    PUBLISHes the baseline frame on the run's Redis channel."""

    name, mode = "raw", "raw"
    script = "raw_websockets.py"
    what = "raw websockets server"

    def __init__(self, topic: str) -> None:
        self.channel = topic
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH / "baselines" / self.script), "--port",
             str(self.port), "--redis-url", REDIS_URL, "--channel", self.channel],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,  # asyncio logs client resets
        )  # fmt: skip
        wait_until(lambda: tcp_open(self.port), 30, self.what, self.proc)
        self.redis = redis.Redis.from_url(REDIS_URL)
        self.counter = 0

    def write(self, slot: int = 0) -> float:
        self.counter += 1
        t = time.time()
        frame = baseline_frame(self.counter, t)
        self.redis.publish(self.channel, json.dumps(frame, separators=(",", ":")))
        return time.time() - t

    def close(self) -> None:
        stop_process(self.proc)
        self.redis.close()


class SocketIOServer(Server):
    """python-socketio (``bench/baselines/socketio_server.py``) fed by its Redis manager."""

    name, mode = "socketio", "socketio"

    def __init__(self, topic: str) -> None:
        import socketio  # not a project dependency: pip install python-socketio uvicorn

        self.channel = topic
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/socket.io/?EIO=4&transport=websocket"
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH / "baselines" / "socketio_server.py"), "--port",
             str(self.port), "--redis-url", REDIS_URL, "--channel", self.channel],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(lambda: tcp_open(self.port), 30, "python-socketio server", self.proc)
        # The writer side of the manager: emit() PUBLISHes the JSON the server's manager reads.
        self.manager = socketio.RedisManager(REDIS_URL, channel=self.channel, write_only=True)
        self.counter = 0

    def write(self, slot: int = 0) -> float:
        # The raw baseline's frame, sent to every client as the event "tx" (42["tx",{...}]).
        self.counter += 1
        t = time.time()
        self.manager.emit("tx", baseline_frame(self.counter, t))
        return time.time() - t

    def close(self) -> None:
        stop_process(self.proc)
        if (client := getattr(self.manager, "redis", None)) is not None:  # set at first emit
            client.close()


class SanicServer(RawServer):
    """The minimal Sanic websocket server (``bench/baselines/sanic_minimal.py``), fed like
    the raw relay; it is there for the memory per idle connection."""

    name, mode = "sanic", "raw"
    script = "sanic_minimal.py"
    what = "minimal Sanic server"


class LoopThread:
    """An asyncio event loop in a daemon thread, to call an async API from sync writers.

    channels_redis layers keep one Redis connection per event loop: calling them through
    ``asgiref``'s ``async_to_sync`` from plain threads would make a new loop, and so a new
    connection, per write. Every writer thread submits to this one loop instead.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


class ChannelsServer(Server):
    """Django Channels + channels_redis (``bench/baselines/channels_app.py``) under uvicorn.

    The writer calls ``group_send("fanout", {"type": "tx", "text": frame})`` on its own
    instance of the server's channel layer class (``RedisPubSubChannelLayer``, or
    ``RedisChannelLayer`` with ``LIVESYNC_BENCH_CHANNELS_LAYER=core``), with the run's prefix.
    """

    name, mode = "channels", "raw"

    def __init__(self, topic: str) -> None:
        from channels_redis.core import RedisChannelLayer  # the bench extra
        from channels_redis.pubsub import RedisPubSubChannelLayer

        self.layer_kind = os.environ.get("LIVESYNC_BENCH_CHANNELS_LAYER", "pubsub")
        layer_class = RedisChannelLayer if self.layer_kind == "core" else RedisPubSubChannelLayer
        self.prefix = topic
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/ws/"
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH / "baselines" / "channels_app.py"), "--port",
             str(self.port), "--redis-url", REDIS_URL, "--prefix", self.prefix,
             "--layer", self.layer_kind],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(lambda: tcp_open(self.port), 30, "Django Channels server", self.proc)
        self.layer = layer_class(hosts=[REDIS_URL], prefix=self.prefix)
        self.loop = LoopThread()
        self.lock = threading.Lock()
        self.counter = 0

    def write(self, slot: int = 0) -> float:
        with self.lock:  # several writer threads: distinct frame numbers
            self.counter += 1
            n = self.counter
        t = time.time()
        text = json.dumps(baseline_frame(n, t), separators=(",", ":"))
        self.loop.run(self.layer.group_send("fanout", {"type": "tx", "text": text}))
        return time.time() - t

    def extra(self) -> dict[str, Any]:
        return {"channel_layer": self.layer_kind}

    def close(self) -> None:
        stop_process(self.proc)
        with contextlib.suppress(Exception):  # flush() closes the layer's connections
            self.loop.run(self.layer.flush())
        self.loop.close()


SERVERS: dict[str, Callable[[str], Server]] = {
    "livesync": LiveSyncServer,
    "raw": RawServer,
    "socketio": SocketIOServer,
    "channels": ChannelsServer,
    "sanic": SanicServer,
}
# Modules a server needs beyond the project's dependencies (the ``bench`` extra).
REQUIRES: dict[str, tuple[str, ...]] = {
    "socketio": ("socketio", "uvicorn"),
    "channels": ("django", "channels", "channels_redis", "uvicorn"),
}


def missing(name: str) -> list[str]:
    """The modules ``name`` needs that are not installed (empty: it can run)."""
    return [m for m in REQUIRES.get(name, ()) if importlib.util.find_spec(m) is None]


@contextlib.contextmanager
def running(name: str) -> Iterator[Server]:
    server = SERVERS[name](f"bench-fanout-{RUN_ID}")
    try:
        yield server
    finally:
        server.close()


# ---------------------------------------------------------------------------- measuring
def write_for(
    server: Server, seconds: float, rate: float, slot: int = 0
) -> tuple[int, list[float]]:
    """Write at ``rate`` per second (or as fast as possible below it) for ``seconds``."""
    interval = 1.0 / rate
    start = time.perf_counter()
    next_at = start
    durations: list[float] = []
    while True:
        now = time.perf_counter()
        if now - start >= seconds:
            break
        if now < next_at:
            time.sleep(next_at - now)
        durations.append(server.write(slot))
        next_at += interval
        if time.perf_counter() - next_at > 0.05:
            next_at = time.perf_counter()  # behind: do not burst to catch up
    return len(durations), durations


def write_parallel(server: Server, seconds: float, rate: float, writers: int) -> int:
    """``write_for`` in ``writers`` threads (commits wait on round trips: threads overlap)."""
    counts: list[int] = []
    threads = [
        threading.Thread(
            target=lambda i=i: counts.append(write_for(server, seconds, rate / writers, i)[0])
        )
        for i in range(writers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts)
