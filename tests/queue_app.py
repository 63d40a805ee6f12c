"""The app of the worker-mode process tests: ``livesync serve tests.queue_app:live --writes
queue`` and ``livesync worker tests.queue_app:live``.

Configured entirely from LIVESYNC_* variables set by the test (database, broker, topic,
claim idle time). Anyone may insert todos; ``add_item`` may pause inside its transaction,
so that a worker killed at random is likely to be in the middle of one; ``notify`` pushes
to the caller's connection from the worker process.
"""

from __future__ import annotations

import time
import uuid

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from livesync import Context, LiveSync, to_session
from tests.models import Item, Todo


class TodoDoc(BaseModel):
    id: uuid.UUID
    owner_id: int
    title: str = Field(min_length=1, max_length=100)
    done: bool = False
    tags: list[str] = Field(default_factory=list)


live = LiveSync()
live.collection(Item, publish=True)
live.collection(Todo, exclude=["note"], publish=True)
live.allow(Todo, schema=TodoDoc, insert=True)


@live.method("add_item")
def add_item(ctx: Context, session: Session, title: str, pause: float = 0.0) -> int:
    item = Item(title=title)
    session.add(item)
    session.flush()
    time.sleep(pause)
    return item.id


@live.method("notify")
def notify(ctx: Context, session: Session, text: str) -> None:
    live.send(to_session(ctx.session), "notified", {"text": text})
