"""examples/flask/after runs as its README says: a WSGI app and `livesync serve` next to it.

The WSGI app (its own process, knowing nothing about websockets) takes a form POST; a
websocket client subscribed to the gateway's `orders` publication receives the new order,
through PostgreSQL and Redis.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.databases import ensure_database
from tests.gateway_support import TIMEOUT, connected
from tests.test_gateway_processes import free_port
from tests.test_hello import _get_when_up

ROOT = Path(__file__).resolve().parents[1]


async def test_flask_example_form_post_reaches_subscribers(
    postgres_url: str, redis_url: str, unique_topic: str
) -> None:
    database_url = make_url(postgres_url).set(database="livesync_test_flask_example")
    database_url = database_url.render_as_string(hide_password=False)
    ensure_database(database_url)  # its own database: the example's `orders` table is fixed
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS orders"))
    engine.dispose()
    app_port, gateway_port = free_port(), free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": database_url,
        "LIVESYNC_BROKER_URL": redis_url,
        "LIVESYNC_TOPIC": unique_topic,
        "PORT": str(app_port),
    }
    processes: list[subprocess.Popen[bytes]] = []
    try:
        # One after the other: both create the tables on import.
        processes.append(_start([sys.executable, "-m", "examples.flask.after.app"], env))
        page = await asyncio.to_thread(_get_when_up, f"http://127.0.0.1:{app_port}/")
        assert b'<script type="module">' in page and b"<li>" not in page
        serve = ["serve", "examples.flask.after.app:live", "--port", str(gateway_port)]
        processes.append(_start([sys.executable, "-m", "livesync.cli", *serve], env))
        await asyncio.to_thread(_get_when_up, f"http://127.0.0.1:{gateway_port}/healthz")
        async with connected(gateway_port) as client:
            docs, ready = await client.subscribe("o", "orders")
            assert docs == [] and ready["type"] == "ready"
            status = await asyncio.to_thread(
                _post_form, f"http://127.0.0.1:{app_port}/", customer="Ada", item="teapot"
            )
            assert status == 303
            tx = await asyncio.wait_for(client.recv_type("tx"), 4 * TIMEOUT)
            (change,) = [c for part in tx["parts"] for c in part["ch"]]
            assert change["op"] == "put"
            assert change["d"]["customer"] == "Ada" and change["d"]["item"] == "teapot"
        page = await asyncio.to_thread(_get_when_up, f"http://127.0.0.1:{app_port}/")
        assert b"<li>Ada: teapot</li>" in page  # the server-rendered page still works
    finally:
        for process in reversed(processes):
            process.send_signal(signal.SIGINT)  # as Ctrl-C in the README's terminals
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _start(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )


def _post_form(url: str, **fields: str) -> int:
    """POST a form without following the redirect; the response's status."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    request = urllib.request.Request(url, data=urllib.parse.urlencode(fields).encode())
    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=TIMEOUT) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:  # the unfollowed 303
        return int(error.code)
