"""``livesync demo``: the live operations dashboard, with its simulator, in one process.

The gateway (websocket, the page, the client modules) and the simulator share one
:class:`~livesync.LiveSync` on the embedded default, SQLite (``livesync-demo.db``) and the
in-memory broker, so nothing else needs installing. Pointed at PostgreSQL and Redis
(``LIVESYNC_DATABASE_URL``, ``LIVESYNC_BROKER_URL``) it runs there instead; the same
dashboard as separate processes is ``examples/dashboard/`` (see its README).

The package holds the example's code so that an installed livesync can run it:
:mod:`.models` (tables), :mod:`.shop` (the writes), :mod:`.simulator`, :mod:`.app`
(publications, the write rule, the page) and ``static/`` (the page, no build step).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import threading
from typing import Any, TextIO

from ..live import LiveSync
from .app import mount, register, setup
from .simulator import Progress, Simulator, describe

__all__ = ["run_demo"]

DEFAULT_DATABASE = "sqlite:///livesync-demo.db"


def run_demo(
    *,
    database_url: str | None = None,
    broker_url: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    rate: float = 20.0,
    duration: float | None = None,
    seed: int | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Serve the dashboard on ``host:port`` with the simulator writing ``rate``
    transactions/s; returns the exit status once Ctrl-C or ``duration`` seconds end it.

    The database and broker default to ``LIVESYNC_DATABASE_URL`` and
    ``LIVESYNC_BROKER_URL``, then to SQLite (``livesync-demo.db`` in the current
    directory) and ``memory://``. Prints the URL as soon as the page can be opened.
    """
    if not _free(host, port):
        out.write(f"livesync demo: {host}:{port} is in use; try --port {port + 1}\n")
        return 2
    database_url = database_url or os.environ.get("LIVESYNC_DATABASE_URL") or DEFAULT_DATABASE
    live = register(LiveSync(database_url, broker_url))
    setup(live)
    app = mount(live)
    if logging.getLogger().getEffectiveLevel() > logging.INFO:  # not -v: no startup chatter
        for name in ("sanic.root", "sanic.server", "sanic.websockets"):
            logging.getLogger(name).setLevel(logging.WARNING)
    simulator = Simulator(live, rate, seed=seed)
    progress = Progress(out, prefix="  ")
    writer = threading.Thread(
        target=simulator.run, args=(duration, progress), name="simulator", daemon=True
    )

    until = "Ctrl-C stops" if duration is None else f"for {duration:g}s"

    async def _started(app: Any) -> None:
        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/"
        out.write(
            f"livesync demo: open {url}\n"
            f"  {live.engine.url.render_as_string()} + {live.settings.broker_url}, "
            f"simulator at {rate:g} transactions/s ({until})\n"
        )
        out.flush()
        writer.start()
        if duration is not None:
            app.add_task(_stop_after(app, writer))

    async def _stopping(app: Any) -> None:
        simulator.stop()
        if writer.is_alive():
            await asyncio.to_thread(writer.join, 10)

    app.register_listener(_started, "after_server_start")
    app.register_listener(_stopping, "before_server_stop")
    try:
        app.run(host=host, port=port, single_process=True, access_log=False, motd=False)
    finally:
        progress.close()
        out.write(f"livesync demo: stopped after {describe(simulator, align=False)}\n")
        out.flush()
        live.close()
    return 0


async def _stop_after(app: Any, writer: threading.Thread) -> None:
    """Stop the server once the simulator's ``duration`` is over."""
    while writer.is_alive():
        await asyncio.sleep(0.1)
    app.stop()


def _free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
