"""Shared by the client-write tests: schemas, declarations, and a "nothing leaked" check."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, Field
from sqlalchemy import func, select, text

from livesync import LiveSync
from livesync.protocol import Call, Insert, Remove, Update, Write
from tests.conftest import Docs, database_docs, published
from tests.models import Item, Todo


class TodoDoc(BaseModel):
    """The whole Todo document as clients see it (``created`` is server-set: not here)."""

    id: uuid.UUID
    owner_id: int
    title: str = Field(min_length=1, max_length=100)
    done: bool = False
    tags: list[Annotated[str, Field(max_length=10)]] = Field(default_factory=list, max_length=5)


class ItemDoc(BaseModel):
    """Item with server-assigned ids."""

    id: int | None = None
    title: str = Field(max_length=100)
    qty: int = Field(0, ge=0)
    data: dict[str, Any] = Field(default_factory=dict)


def allow_todos(live: LiveSync, **overrides: Any) -> None:
    """Todos: anyone signed in may insert their own, and change or delete only their own."""
    options: dict[str, Any] = {
        "schema": TodoDoc,
        "immutable": ("owner_id",),
        "insert": lambda ctx, new: new["owner_id"] == ctx.identity,
        "update": lambda ctx, old, new: old["owner_id"] == ctx.identity,
        "delete": lambda ctx, old: old["owner_id"] == ctx.identity,
    }
    live.allow(Todo, **{**options, **overrides})


def allow_items(live: LiveSync) -> None:
    """Items: server ids, last writer wins, no deletes."""
    live.allow(
        Item,
        schema=ItemDoc,
        insert=True,
        update=True,
        conflicts="last-writer-wins",
        ids="server",
    )


def todo_publication(live: LiveSync) -> None:
    """``todos``: compiled to Python; ``todos_requery``: a filter only the database runs."""
    live.publication("todos")(lambda ctx: select(Todo))
    live.publication("todos_requery")(lambda ctx: select(Todo).where(func.length(Todo.title) > 0))


_KINDS: dict[str, Any] = {"insert": Insert, "update": Update, "remove": Remove, "call": Call}


def message(**fields: Any) -> Write:
    """A client message as the protocol core would hand it over (validated)."""
    parsed: Write = _KINDS[fields["type"]].model_validate(fields)
    return parsed


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Snapshot:
    docs: Docs
    published: int
    outbox: frozenset[str]
    requests: frozenset[tuple[str, str]]


def snapshot(live: LiveSync) -> Snapshot:
    """Everything a write could leave behind: rows, broker entries, outbox and stored acks."""
    with live.engine.connect() as conn:
        outbox = conn.execute(text("SELECT changeset_id FROM livesync_outbox")).scalars()
        outbox_ids = frozenset(outbox)
        stored = conn.execute(text("SELECT client, request FROM livesync_requests")).all()
    return Snapshot(
        database_docs(live),
        len(published(live)),
        outbox_ids,
        frozenset((c, r) for c, r in stored),
    )


def assert_untouched(live: LiveSync, before: Snapshot) -> None:
    """Nothing in the tables, nothing published, no outbox row, no stored ack."""
    after = snapshot(live)
    assert after.docs == before.docs
    assert after.published == before.published
    # The janitor may delete rows of earlier, published writes meanwhile; never add one.
    assert after.outbox <= before.outbox
    assert after.requests == before.requests
