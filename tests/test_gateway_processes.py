"""Gateways as separate processes (``livesync serve``) on PostgreSQL + Redis.

Proves scale-out (a write reaches the clients of every gateway) and that killing a gateway
loses nothing: its clients reconnect to another one and resume with only what they missed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from livesync import LiveSync
from tests.conftest import make_live
from tests.gateway_support import TIMEOUT, connected
from tests.models import Item

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Gateway:
    """One ``livesync serve`` process."""

    def __init__(
        self, env: dict[str, str], target: str = "tests.serve_app:live", *args: str
    ) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "livesync.cli", "serve", target,
             "--port", str(self.port), *args],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 6 * TIMEOUT
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1):
                    return
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.1)
        self.stop()
        raise AssertionError(f"gateway did not start: {self.output()}")

    def output(self) -> str:
        if self.process.stdout is None or self.process.poll() is None:
            return ""
        return self.process.stdout.read().decode(errors="replace")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def cluster(postgres_url: str, redis_url: str, unique_topic: str) -> Iterator[tuple[LiveSync, Any]]:
    live = make_live(postgres_url, redis_url, topic=unique_topic)
    live.collection(Item)
    env = {
        "LIVESYNC_DATABASE_URL": postgres_url,
        "LIVESYNC_BROKER_URL": redis_url,
        "LIVESYNC_TOPIC": unique_topic,
    }
    started: list[Gateway] = []

    def start() -> Gateway:
        gateway = Gateway(env)
        started.append(gateway)
        return gateway

    try:
        yield live, start
    finally:
        for gateway in started:
            gateway.stop()
        live.close()


def write(live: LiveSync, item_id: int, title: str) -> None:
    with live.sessionmaker() as s:
        s.add(Item(id=item_id, title=title))
        s.commit()
    live._publisher.flush()


def ids(tx: dict[str, Any]) -> list[str]:
    return [c["id"] for part in tx["parts"] for c in part["ch"]]


async def test_two_gateways_share_writes_and_survive_a_kill(cluster: Any) -> None:
    live, start = cluster
    first, second = start(), start()
    async with connected(first.port) as on_first, connected(second.port) as on_second:
        _, ready = await on_first.subscribe("all", "t_items")
        await on_second.subscribe("all", "t_items")
        await asyncio.to_thread(write, live, 1, "to everyone")
        assert ids(await on_first.recv_type("tx")) == ["1"]
        assert ids(await on_second.recv_type("tx")) == ["1"]
        position = ready["pos"] + 1

    first.kill()
    await asyncio.to_thread(write, live, 2, "while a gateway was dead")
    async with connected(second.port) as moved:
        since = {"epoch": ready["epoch"], "pos": position}
        replayed, again = await moved.subscribe("all", "t_items", since=since)
        assert again["resumed"] is True
        assert [ids(tx) for tx in replayed] == [["2"]]
