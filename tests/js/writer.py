"""ORM writes on request, for the JavaScript client's integration tests.

``python -m tests.js.writer`` reads one JSON command per line on stdin, performs it through
livesync's instrumented sessions (configured by LIVESYNC_* variables), and answers one JSON
line on stdout: ``{"ok": true}`` or ``{"ok": false, "error": "..."}``. One process serves a
whole test file, so a write costs milliseconds, not an interpreter start.

Commands (``op``): ``setup`` (fresh tables and outbox), ``insert`` (``items``: list of
fields), ``update`` (``id``, ``set``: fields), ``json`` (``id``, ``path``: keys,
``value``: an in-place nested JSON mutation), ``delete`` (``id``), ``bulk`` (``min_qty``,
``qty``: an ORM bulk UPDATE), ``rollback`` (``items``: inserted, then rolled back).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from sqlalchemy import update

from livesync import LiveSync
from tests.databases import ensure_database
from tests.models import Base, Item


def perform(live: LiveSync, command: dict[str, Any]) -> None:
    op = command["op"]
    if op == "setup":
        with live.engine.begin() as conn:
            Base.metadata.drop_all(conn)
            Base.metadata.create_all(conn)
        live.upgrade()
        return
    with live.sessionmaker() as session:
        if op in ("insert", "rollback"):
            session.add_all(Item(**fields) for fields in command["items"])
            if op == "rollback":
                session.flush()
                session.rollback()
                return
        elif op == "update":
            item = session.get(Item, command["id"])
            assert item is not None, f"no item {command['id']}"
            for key, value in command["set"].items():
                setattr(item, key, value)
        elif op == "json":
            item = session.get(Item, command["id"])
            assert item is not None, f"no item {command['id']}"
            target = item.data
            *parents, last = command["path"]
            for key in parents:
                target = target.setdefault(key, {})
            target[last] = command["value"]  # in place: capture must notice it
        elif op == "delete":
            item = session.get(Item, command["id"])
            assert item is not None, f"no item {command['id']}"
            session.delete(item)
        elif op == "bulk":
            session.execute(
                update(Item).where(Item.qty >= command["min_qty"]).values(qty=command["qty"])
            )
        else:
            raise ValueError(f"unknown op {op!r}")
        session.commit()


def main() -> None:
    live = LiveSync()
    ensure_database(live.settings.database_url)
    live.collection(Item)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            perform(live, json.loads(line))
            answer: dict[str, Any] = {"ok": True}
        except Exception as exc:  # report, keep serving: the test decides
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)
    live.close()


if __name__ == "__main__":
    main()
