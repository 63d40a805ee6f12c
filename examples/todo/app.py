"""A collaborative to-do list: ``livesync serve examples.todo.app:live`` (see README.md).

Several people edit the same list at once: every add, rename, tick and delete shows in
every open page the moment it commits. The page writes with the client's optimistic,
server-validated writes; this module says what it may write:

* the **schema** (:class:`TodoWrite`, pydantic): a title of 1 to 120 characters, a done
  flag, a position, a list name. The client checks it before sending (the gateway serves
  it as JSON Schema) and the server checks it again;
* the **rules** (:func:`may_write`): a title may not contain a blocked word, a check only
  the server makes (the page shows the refusal and the client rolls the write back);
* **immutable** fields: a to-do keeps its id and its list.

Configured by ``LIVESYNC_DATABASE_URL`` and ``LIVESYNC_BROKER_URL`` like any livesync
process (default: SQLite ``livesync.db`` and the in-memory broker, one process).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field
from sqlalchemy import DateTime, Index, Select, String, Uuid, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from livesync import LiveSync, Versioned
from livesync.publications import Context, Forbidden

STATIC = Path(__file__).resolve().with_name("static")

#: Words no title may contain: a rule only the server checks (the page learns of it from
#: the refusal). A real app would check a permission, a quota, a state machine...
BLOCKED = ("spam",)

ListName = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[a-z0-9-]+$")]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    """The example's own metadata: ``Base.metadata.create_all`` makes its table."""


class Todo(Versioned, Base):
    """One to-do of a list. ``position`` orders the list (the page appends at max + 1);
    ``created_at`` is stamped by the server and breaks ties."""

    __tablename__ = "todos"
    __table_args__ = (Index("todos_list_position", "list", "position"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    list: Mapped[str] = mapped_column(String(40), default="home")
    title: Mapped[str] = mapped_column(String(120))
    done: Mapped[bool] = mapped_column(default=False)
    position: Mapped[float] = mapped_column(default=0.0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# ---------------------------------------------------------------------- publication
def todos(ctx: Context, list: ListName = "home") -> Select[Any]:
    """The to-dos of one list, in the list's order."""
    return select(Todo).where(Todo.list == list).order_by(Todo.position, Todo.created_at)


# ---------------------------------------------------------------------- client writes
class TodoWrite(BaseModel):
    """What a client may write: the whole document but ``created_at`` (server-stamped)."""

    id: uuid.UUID
    list: ListName = "home"
    title: str = Field(min_length=1, max_length=120)
    done: bool = False
    position: float = 0.0


def blocked_word(title: str) -> str | None:
    """The first blocked word ``title`` contains (as a word, any case), if any."""
    for word in BLOCKED:
        if re.search(rf"\b{re.escape(word)}\b", title, re.IGNORECASE):
            return word
    return None


def may_write(ctx: Context, *docs: dict[str, Any]) -> bool:
    """The insert and update rule (``new`` is the last document): refuse blocked words."""
    word = blocked_word(docs[-1]["title"])
    if word is not None:
        raise Forbidden(f'titles may not contain "{word}"')
    return True


# ---------------------------------------------------------------------- wiring
def register(live: LiveSync) -> LiveSync:
    """Declare the collection, the publication and the write rules on ``live``."""
    live.collection(Todo, name="todos")
    live.publication("todos")(todos)
    live.allow(
        Todo,
        schema=TodoWrite,
        immutable=("id", "list"),
        insert=may_write,
        update=may_write,
        delete=True,
        ids="uuid",
    )
    return live


_SETUP_LOCK = 7_412_604_432  # this example's advisory lock key (any number)


def setup(live: LiveSync) -> None:
    """Create the table and livesync's own (idempotent; on PostgreSQL under an advisory
    lock, since two processes starting at once would race on ``CREATE TABLE``)."""
    with live.engine.connect() as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _SETUP_LOCK})
        try:
            Base.metadata.create_all(conn)
            conn.commit()
            live.upgrade()
        finally:
            if postgres:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _SETUP_LOCK})
                conn.commit()


def mount(live: LiveSync) -> Any:
    """Serve the page at ``/`` and its files at ``/static/``; the client is served by the
    gateway itself at ``/live/client/``."""
    app = live.app
    app.static("/", str(STATIC / "index.html"), name="todo_page")
    app.static("/static/", str(STATIC), name="todo_static")
    return app


live = register(LiveSync())
setup(live)
app = mount(live)
