"""A Redis restart (history lost, new epoch) makes clients take a fresh snapshot and converge.

The test runs its own redis-server on a free port, so it can kill and restart it.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from livesync import LiveSync
from tests.conftest import REQUIRE_SERVICES, make_live
from tests.gateway_support import TIMEOUT, connected, running_gateway
from tests.models import Item

pytestmark = pytest.mark.slow


class RedisServer:
    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            message = "redis-server is not installed"
            if REQUIRE_SERVICES:
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
        self.binary = binary
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.kill()


def write(live: LiveSync, item_id: int) -> None:
    with live.sessionmaker() as s:
        s.add(Item(id=item_id, title=f"item {item_id}"))
        s.commit()
    live._publisher.flush()


async def test_clients_converge_after_redis_loses_its_history(
    database_url: str, redis_server: RedisServer
) -> None:
    live = make_live(
        database_url,
        f"redis://127.0.0.1:{redis_server.port}/0",
        outbox_grace=0.5,
        relay_interval=0.1,
    )
    live.collection(Item, publish=True)
    try:
        async with running_gateway(live) as port, connected(port) as client:
            _, ready = await client.subscribe("all", "t_items")
            await asyncio.to_thread(write, live, 1)
            await client.recv_type("tx")

            redis_server.kill()
            await asyncio.to_thread(write, live, 2)  # publish fails: the outbox keeps it
            redis_server.start()  # empty: a new epoch

            reset = await client.recv_type("reset")
            assert reset["key"] == ready["key"]
            docs, again = await client.subscribe("all-again", "t_items")
            assert again["resumed"] is False and again["epoch"] != ready["epoch"]
            assert sorted(d["id"] for d in docs) == ["1", "2"]
            await asyncio.to_thread(write, live, 3)
            tx = await client.recv_type("tx")
            assert [c["id"] for p in tx["parts"] for c in p["ch"]] == ["3"]
    finally:
        live.close()


async def test_dropped_redis_connections_lose_nothing(
    database_url: str, redis_server: RedisServer
) -> None:
    import redis

    url = f"redis://127.0.0.1:{redis_server.port}/0"
    live = make_live(database_url, url, outbox_grace=0.5, relay_interval=0.1)
    live.collection(Item, publish=True)
    admin = redis.Redis.from_url(url)
    try:
        async with running_gateway(live) as port, connected(port) as client:
            await client.subscribe("all", "t_items")
            for item_id in range(1, 11):
                await asyncio.to_thread(write, live, item_id)
                if item_id % 3 == 0:  # cut every client connection, the gateway's included
                    admin.client_kill_filter(_type="normal", skipme=True)
            seen: set[str] = set()
            while len(seen) < 10:
                tx = await client.recv_type("tx")
                seen.update(c["id"] for p in tx["parts"] for c in p["ch"])
            assert seen == {str(i) for i in range(1, 11)}
    finally:
        admin.close()
        live.close()
