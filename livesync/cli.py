"""The ``livesync`` command: ``serve``, ``relay``, ``db`` and ``demo``."""

from __future__ import annotations

import argparse
import functools
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from .live import LiveSync


def _live(args: argparse.Namespace) -> LiveSync:
    return LiveSync(args.database_url, args.broker_url)


def _db(args: argparse.Namespace) -> int:
    from . import migrate

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

    database_url = args.database_url or os.environ.get("LIVESYNC_DATABASE_URL")
    live = LiveSync(database_url or "sqlite:///livesync-demo.db", args.broker_url)
    try:
        converged = run_demo(live, args.duration, args.rate, sys.stdout, seed=args.seed)
    finally:
        live.close()
    return 0 if converged else 1


def load_app(target: str) -> Any:
    """The Sanic app for ``MODULE:ATTR`` (a LiveSync object, or a Sanic app)."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise SystemExit(f"livesync serve: expected MODULE:ATTR, got {target!r}")
    sys.path.insert(0, os.getcwd())
    found = getattr(importlib.import_module(module_name), attr)
    return found.app if isinstance(found, LiveSync) else found


def _serve(args: argparse.Namespace) -> int:
    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    loader = AppLoader(factory=functools.partial(load_app, args.target))
    app = loader.load()
    app.prepare(
        host=args.host,
        port=args.port,
        workers=args.workers,
        single_process=args.workers == 1,
        access_log=False,
        motd=False,
    )
    print(f"livesync serving {args.target} on http://{args.host}:{args.port}/live", flush=True)
    Sanic.serve(primary=app, app_loader=loader)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="livesync", description="Live, replicated collections from SQLAlchemy models."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
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
    serve.set_defaults(run=_serve)

    demo = commands.add_parser(
        "demo", parents=[common], help="a live console on SQLite + the in-memory broker"
    )
    demo.add_argument("--duration", type=float, default=20.0, help="seconds (default 20)")
    demo.add_argument("--rate", type=float, default=5.0, help="transactions/s (default 5)")
    demo.add_argument("--seed", type=int, default=None, help="random seed")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
