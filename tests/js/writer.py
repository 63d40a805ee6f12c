"""ORM writes on request, for the JavaScript client's integration tests.

``python -m tests.js.writer`` reads one JSON command per line on stdin, performs it through
livesync's instrumented sessions (configured by LIVESYNC_* variables), and answers one JSON
line on stdout: ``{"ok": true}`` or ``{"ok": false, "error": "..."}``. One process serves a
whole test file, so a write costs milliseconds, not an interpreter start.

Commands (``op``): ``setup`` (fresh tables and outbox), ``insert`` (``items``: list of
fields), ``update`` (``id``, ``set``: fields), ``json`` (``id``, ``path``: keys,
``value``: an in-place nested JSON mutation), ``delete`` (``id``), ``bulk`` (``min_qty``,
``qty``: an ORM bulk UPDATE), ``rollback`` (``items``: inserted, then rolled back),
``todo`` (``id``, ``set``: change a todo), ``dump`` (answers ``items`` and ``todos``: every
row, and ``requests``: how many write acks are stored), ``send`` (``channel``, ``event``,
``data``: ``live.send`` to a channel, from this process).
"""

from __future__ import annotations

import json
import sys
import uuid
from typing import Any

from sqlalchemy import select, text, update

from livesync import LiveSync, to_channel
from tests.databases import ensure_database
from tests.models import Base, Item, Todo

ITEM_FIELDS = ("id", "title", "qty", "data", "created", "touched", "secret", "version")
TODO_FIELDS = ("id", "owner_id", "title", "done", "tags", "created", "note", "version")


def dump(live: LiveSync) -> dict[str, Any]:
    """Every row of the writable tables, as JSON, and the number of stored acks."""

    def rows(model: Any, fields: tuple[str, ...]) -> list[dict[str, Any]]:
        with live.sessionmaker() as session:
            found = session.scalars(select(model).order_by(model.id)).all()
            return [
                {f: str(getattr(row, f)) if f == "id" else getattr(row, f) for f in fields}
                for row in found
            ]

    with live.engine.connect() as conn:
        requests = conn.execute(text("SELECT count(*) FROM livesync_requests")).scalar_one()
    return {
        "items": rows(Item, ITEM_FIELDS),
        "todos": rows(Todo, TODO_FIELDS),
        "requests": requests,
    }


def perform(live: LiveSync, command: dict[str, Any]) -> dict[str, Any] | None:
    op = command["op"]
    if op == "setup":
        with live.engine.begin() as conn:
            Base.metadata.drop_all(conn)
            Base.metadata.create_all(conn)
        live.upgrade()
        return None
    if op == "dump":
        return dump(live)
    if op == "send":
        live.send(to_channel(command["channel"]), command["event"], command.get("data"))
        return None
    with live.sessionmaker() as session:
        if op in ("insert", "rollback"):
            session.add_all(Item(**fields) for fields in command["items"])
            if op == "rollback":
                session.flush()
                session.rollback()
                return None
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
        elif op == "todo":
            todo = session.get(Todo, uuid.UUID(command["id"]))
            assert todo is not None, f"no todo {command['id']}"
            for key, value in command["set"].items():
                setattr(todo, key, value)
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
    if op == "insert" and live.engine.dialect.name == "postgresql":
        # Explicit ids leave the sequence behind: move it on, so that ids the server
        # assigns to client inserts (ids="server") do not collide with them.
        with live.engine.begin() as conn:
            conn.execute(
                text(
                    "SELECT setval(pg_get_serial_sequence('t_items', 'id'), "
                    "(SELECT max(id) FROM t_items))"
                )
            )
    return None


def main() -> None:
    live = LiveSync()
    ensure_database(live.settings.database_url)
    live.collection(Item)
    live.collection(Todo, exclude=["note"])
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            answer: dict[str, Any] = {"ok": True, **(perform(live, json.loads(line)) or {})}
        except Exception as exc:  # report, keep serving: the test decides
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)
    live.close()


if __name__ == "__main__":
    main()
