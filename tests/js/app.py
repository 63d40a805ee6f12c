"""The gateway the JavaScript client's integration and browser tests talk to.

``livesync serve tests.js.app:app``, configured by LIVESYNC_* variables from the test
harness (client-js/test/integration/harness.js). Besides the websocket it serves the client's
source (``/client/``) and the browser test page (``/``), so the page's Origin is the
gateway's own.

Client writes (client-js/test/integration/writes.test.js): the token is the user id (tests
only; no token: anonymous). ``t_items`` takes inserts with server-assigned ids (refused
when the title starts with "no "), updates unless the title is "locked", and removes of
empty items (qty 0). ``t_todos`` takes client UUIDs; only the owner inserts, changes or
removes a todo, and the owner never changes. Methods ``add_items`` (returns the new ids)
and ``explode`` (a bug: ``internal``); channels ``room:*`` for signed-in users.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from livesync import LiveSync
from livesync.publications import Context
from tests.models import Item, Todo

ROOT = Path(__file__).resolve().parents[2]

live = LiveSync()
live.collection(Item, publish=True)
live.collection(Todo, publish=True, exclude=["note"])


@live.authenticate
def by_token(token: str | None, request: Any) -> int | None:
    return int(token) if token else None


@live.publication("items_min_qty")
def items_min_qty(ctx: Context, min_qty: int) -> Any:
    return select(Item).where(Item.qty >= min_qty)


@live.publication("top_items")
def top_items(ctx: Context, n: int = 3) -> Any:
    return select(Item).order_by(Item.qty.desc()).limit(n)


class ItemDoc(BaseModel):
    id: int | None = None
    title: str = Field(min_length=1, max_length=100)
    qty: int = Field(0, ge=0)
    data: dict[str, Any] = Field(default_factory=dict)


class TodoDoc(BaseModel):
    id: uuid.UUID
    owner_id: int
    title: str = Field(min_length=1, max_length=100)
    done: bool = False
    tags: list[str] = Field(default_factory=list, max_length=5)


live.allow(
    Item,
    schema=ItemDoc,
    ids="server",
    insert=lambda ctx, new: not new["title"].startswith("no "),
    update=lambda ctx, old, new: old["title"] != "locked",
    delete=lambda ctx, old: old["qty"] == 0,
)
live.allow(
    Todo,
    schema=TodoDoc,
    immutable=("owner_id",),
    insert=lambda ctx, new: new["owner_id"] == ctx.identity,
    update=lambda ctx, old, new: old["owner_id"] == ctx.identity,
    delete=lambda ctx, old: old["owner_id"] == ctx.identity,
)


@live.method("add_items")
def add_items(ctx: Context, session: Session, titles: list[str], qty: int = 0) -> dict[str, Any]:
    items = [Item(title=title, qty=qty) for title in titles]
    session.add_all(items)
    session.flush()
    return {"ids": [item.id for item in items], "by": ctx.identity}


@live.method("explode")
def explode(ctx: Context, session: Session) -> None:
    session.add(Item(title="never committed"))
    session.flush()
    raise RuntimeError("a bug in the application")


@live.channel("room:*")
def rooms(ctx: Context, name: str) -> bool:
    return ctx.identity is not None


app = live.app
app.static("/client/", str(ROOT / "client-js" / "src"))
app.static("/", str(ROOT / "client-js" / "test" / "browser" / "page.html"), name="page")
