"""The README's "hello, live world" runs as printed: serve, write from another process, see it.

It runs on the embedded default (SQLite, memory broker), so it needs no services: the other
process's write reaches the gateway through the outbox relay.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.gateway_support import TIMEOUT, connected
from tests.test_gateway_processes import free_port

ROOT = Path(__file__).resolve().parents[1]


async def test_hello_live_world(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LIVESYNC_DATABASE_URL": f"sqlite:///{tmp_path / 'hello.db'}",
        "LIVESYNC_BROKER_URL": "memory://",
    }
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "livesync.cli", "serve", "examples.hello.app:live", "--port",
         str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        page = await asyncio.to_thread(_get_when_up, f"http://127.0.0.1:{port}/")
        assert b'import { connect } from "/live/client/index.js"' in page
        client_module = await asyncio.to_thread(
            _get_when_up, f"http://127.0.0.1:{port}/live/client/index.js"
        )
        assert b"export" in client_module
        async with connected(port) as client:
            docs, _ = await client.subscribe("m", "messages")
            assert docs == []
            subprocess.run(
                [sys.executable, "-m", "examples.hello.write", "hello,", "live", "world"],
                cwd=ROOT, env=env, check=True,
            )  # fmt: skip
            tx = await asyncio.wait_for(client.recv_type("tx"), 4 * TIMEOUT)
            (change,) = [c for part in tx["parts"] for c in part["ch"]]
            assert change["op"] == "put" and change["d"]["text"] == "hello, live world"
    finally:
        server.terminate()
        server.wait(timeout=15)


def _get_when_up(url: str) -> bytes:
    import time

    deadline = time.monotonic() + 6 * TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                body: bytes = response.read()
                return body
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
