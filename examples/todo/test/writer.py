"""ORM writes on request for the to-do example's browser tests, from a process of their own.

Reads one JSON command per line on stdin, answers one JSON line on stdout
(``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``). Configured by LIVESYNC_*
variables. Commands (``op``): ``reset`` (a fresh table), ``add`` (``title``, ``list``;
answers its ``id``), ``get`` (``id``; answers the document or null), ``titles``
(``list``; answers the titles in the database, in order).
"""

from __future__ import annotations

import json
import sys
import uuid
from typing import Any

from sqlalchemy import func, select

from livesync import LiveSync
from livesync.config import Settings
from tests.databases import ensure_database

# PostgreSQL: create the test database once, before the app (which creates its table) loads.
ensure_database(Settings().database_url)

from examples.todo.app import Base, Todo, live, setup  # noqa: E402


def perform(live: LiveSync, command: dict[str, Any]) -> dict[str, Any]:
    op = command["op"]
    if op == "reset":
        Base.metadata.drop_all(live.engine)
        setup(live)
        return {}
    if op == "add":
        with live.sessionmaker() as session:
            last = session.scalar(
                select(func.max(Todo.position)).where(Todo.list == command["list"])
            )
            todo = Todo(list=command["list"], title=command["title"], position=(last or 0) + 1)
            session.add(todo)
            session.commit()
            return {"id": str(todo.id)}
    if op == "get":
        with live.sessionmaker() as session:
            row = session.get(Todo, uuid.UUID(command["id"]))
            return {"doc": None if row is None else live.collections["todos"].document(row)}
    if op == "titles":
        with live.sessionmaker() as session:
            query = select(Todo.title).where(Todo.list == command["list"]).order_by(Todo.position)
            return {"titles": list(session.scalars(query))}
    raise ValueError(f"unknown op {op!r}")


def main() -> None:
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
