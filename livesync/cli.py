"""The ``livesync`` command: ``serve``, ``worker``, ``relay``, ``db`` and ``demo``."""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from .live import LiveSync
from .logs import FORMATS, LEVELS, configure


def _live(args: argparse.Namespace) -> LiveSync:
    return LiveSync(args.database_url, args.broker_url)


def _db(args: argparse.Namespace) -> int:
    import logging

    from . import migrate

    # Progress: Alembic logs each step ("Running upgrade A -> B") at INFO.
    logging.getLogger("alembic.runtime.migration").setLevel(logging.INFO)
    live = _live(args)
    try:
        if args.action == "upgrade":
            print(f"upgrading livesync tables in {live.engine.url!r} to {args.revision}...")
            migrate.upgrade(live.engine, args.revision)
        elif args.action == "downgrade":
            migrate.downgrade(live.engine, args.revision)
        print(f"livesync tables at revision {migrate.current(live.engine) or 'none (base)'}")
    finally:
        live.close()
    return 0


def _relay(args: argparse.Namespace) -> int:
    live = _live(args)
    relay = live.relay()
    try:
        if args.once:
            print(f"published {relay.run_once()} outbox rows; backlog {relay.backlog()}")
        else:
            print(f"relaying {live.engine.url!r} -> {live.settings.broker_url} (Ctrl-C stops)")
            relay.run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        live.close()
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(
        database_url=args.database_url,
        broker_url=args.broker_url,
        host=args.host,
        port=args.port,
        rate=args.rate,
        duration=args.duration,
        seed=args.seed,
    )


def _load(target: str, command: str) -> Any:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise SystemExit(f"livesync {command}: expected MODULE:ATTR, got {target!r}")
    sys.path.insert(0, os.getcwd())
    return getattr(importlib.import_module(module_name), attr)


def load_app(target: str, writes: str | None = None) -> Any:
    """The Sanic app for ``MODULE:ATTR`` (a LiveSync object, or a Sanic app).

    ``writes`` (``--writes``) overrides the LiveSync's ``writes`` setting; for a Sanic
    app it only reaches LiveSync objects created after this, through ``LIVESYNC_WRITES``.
    """
    from .workqueue import QueueModeError

    if writes is not None:
        os.environ["LIVESYNC_WRITES"] = writes
    try:
        found = _load(target, "serve")
    except QueueModeError as exc:  # raised by a LiveSync created at import
        raise SystemExit(f"livesync: {exc}") from None
    if not isinstance(found, LiveSync):
        return found
    if writes is not None:
        found.settings.writes = writes  # type: ignore[assignment]
        if writes == "queue":
            _require_redis(found)
    return found.app


def _require_redis(live: LiveSync) -> None:
    from .workqueue import QueueModeError, require_redis

    try:
        require_redis(live)
    except QueueModeError as exc:
        raise SystemExit(f"livesync: {exc}") from None


def _serve(args: argparse.Namespace) -> int:
    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    loader = AppLoader(factory=functools.partial(load_app, args.target, args.writes))
    app = loader.load()
    app.prepare(
        host=args.host,
        port=args.port,
        workers=args.workers,
        single_process=args.workers == 1,
        access_log=False,
        motd=False,
    )
    mode = " (writes queued for `livesync worker`)" if args.writes == "queue" else ""
    print(
        f"livesync serving {args.target} on http://{args.host}:{args.port}/live{mode}", flush=True
    )
    if args.workers == 1:
        # In this process: Sanic.serve() ignores single_process and would always spawn a
        # worker, which outlives a main process killed with SIGKILL (holding the port).
        Sanic.serve_single(primary=app)
    else:
        Sanic.serve(primary=app, app_loader=loader)
    return 0


def _worker(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from .worker import Worker

    live = _load(args.target, "worker")
    if not isinstance(live, LiveSync):
        raise SystemExit(f"livesync worker: {args.target} is not a LiveSync object")
    _require_redis(live)
    worker = Worker(live, name=args.name, concurrency=args.concurrency, claim_idle=args.claim_idle)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, worker.stop)
        task = asyncio.create_task(worker.run())
        started = asyncio.create_task(worker.started.wait())
        await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
        if worker.started.is_set():
            print(
                f"livesync worker {worker.name} running writes of topic "
                f"{live.settings.topic!r} (SIGTERM stops after the running requests)",
                flush=True,
            )
        started.cancel()
        await task
        await live.broker.aclose()

    try:
        asyncio.run(run())
    finally:
        live.close()
    print(f"livesync worker {worker.name} stopped ({worker.processed} requests)", flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="livesync", description="Live, replicated collections from SQLAlchemy models."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    parser.add_argument(
        "--log-level", choices=LEVELS, help="default: $LIVESYNC_LOG_LEVEL or warning"
    )
    parser.add_argument(
        "--log-format", choices=FORMATS, help="text or json lines; default $LIVESYNC_LOG_FORMAT"
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--database-url", help="default: $LIVESYNC_DATABASE_URL or SQLite")
    common.add_argument("--broker-url", help="default: $LIVESYNC_BROKER_URL or memory://")
    commands = parser.add_subparsers(dest="command", required=True)

    db = commands.add_parser("db", parents=[common], help="manage livesync's own tables")
    db.add_argument("action", choices=["upgrade", "downgrade", "current"])
    db.add_argument("revision", nargs="?", default="head", help="target revision (default head)")
    db.set_defaults(run=_db)

    relay = commands.add_parser(
        "relay", parents=[common], help="publish change sets that crashed writers left behind"
    )
    relay.add_argument("--once", action="store_true", help="one pass, then exit")
    relay.set_defaults(run=_relay)

    serve = commands.add_parser(
        "serve", help="run the websocket gateway (and an outbox relay) for MODULE:ATTR"
    )
    serve.add_argument("target", help="MODULE:ATTR naming a LiveSync object (or a Sanic app)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="gateway processes (default 1)")
    serve.add_argument(
        "--writes",
        choices=["inline", "queue"],
        default=None,
        help="run client writes here (inline, the default) or queue them on Redis for "
        "`livesync worker` processes (queue; Redis brokers only)",
    )
    serve.set_defaults(run=_serve)

    worker = commands.add_parser(
        "worker", help="run queued client writes and method calls (Redis only)"
    )
    worker.add_argument("target", help="MODULE:ATTR naming a LiveSync object")
    worker.add_argument("--name", default=None, help="consumer name (default host-pid-random)")
    worker.add_argument(
        "--concurrency", type=int, default=None, help="requests at once (default 4)"
    )
    worker.add_argument(
        "--claim-idle",
        type=float,
        default=None,
        help="seconds before a dead worker's request is claimed (default 10)",
    )
    worker.set_defaults(run=_worker)

    demo = commands.add_parser(
        "demo", parents=[common], help="the live dashboard on SQLite + the in-memory broker"
    )
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--duration", type=float, default=None, help="seconds (default: Ctrl-C)")
    demo.add_argument("--rate", type=float, default=20.0, help="transactions/s (default 20)")
    demo.add_argument("--seed", type=int, default=None, help="random seed")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure(args.log_level, args.log_format, args.verbose)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
