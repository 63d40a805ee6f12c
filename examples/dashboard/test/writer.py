"""ORM writes on request for the dashboard's browser tests, from a process of their own.

Reads one JSON command per line on stdin, answers one JSON line on stdout
(``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``). Configured by LIVESYNC_*
variables. Commands (``op``): ``reset`` (fresh tables), ``order`` (a new order for
``customer``; answers its ``id``), ``advance`` / ``refund`` (``id``), ``alert``
(``severity``, ``message``; answers its ``id``), ``get`` (``table``: ``alerts`` or
``orders``, ``id``; answers the row's document), ``count`` (answers ``orders``).
"""

from __future__ import annotations

import json
import random
import sys
from typing import Any

from sqlalchemy import func, select

from livesync import LiveSync
from livesync.demo import shop
from livesync.demo.app import register, setup
from livesync.demo.models import Alert, Base, Order
from tests.databases import ensure_database

rng = random.Random(7)


def perform(live: LiveSync, command: dict[str, Any]) -> dict[str, Any]:
    op = command["op"]
    if op == "reset":
        Base.metadata.drop_all(live.engine)
        setup(live)
        return {}
    if op == "order":
        customer = command.get("customer")
        return {"id": shop.transaction(live, lambda s: shop.place_order(s, rng, customer)).id}
    if op in ("advance", "refund"):
        step = shop.advance if op == "advance" else shop.refund
        return {"done": shop.transaction(live, lambda s: step(s, command["id"]) is not None)}
    if op == "alert":
        severity, message = command["severity"], command["message"]
        return {"id": shop.transaction(live, lambda s: shop.raise_alert(s, severity, message)).id}
    if op == "get":
        model = {"alerts": Alert, "orders": Order}[command["table"]]
        collection = live.collections[command["table"]]
        with live.sessionmaker() as session:
            row = session.get(model, command["id"])
            return {"doc": None if row is None else collection.document(row)}
    if op == "count":
        with live.sessionmaker() as session:
            return {"orders": session.scalar(select(func.count()).select_from(Order))}
    raise ValueError(f"unknown op {op!r}")


def main() -> None:
    live = LiveSync()
    ensure_database(live.settings.database_url)  # PostgreSQL: create the test database once
    register(live)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            answer = {"ok": True, **perform(live, json.loads(line))}
        except Exception as exc:  # report and keep serving: the test decides
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer, default=str), flush=True)
    live.close()


if __name__ == "__main__":
    main()
