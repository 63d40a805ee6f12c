"""The app ``livesync serve bench.fanout_app:live`` that ``bench/fanout.py`` benchmarks.

One collection, published to everyone as ``bench_fanout_items``. Its own table, so that the
benchmark never touches the tests' tables. Configured from LIVESYNC_* variables (database,
broker, topic) set by ``bench/fanout.py``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from livesync import LiveSync, Versioned

TABLE = "bench_fanout_items"


class Base(DeclarativeBase):
    pass


class FanoutItem(Versioned, Base):
    """A small document; the writer puts its commit timestamp in ``data["t"]``."""

    __tablename__ = TABLE

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


live = LiveSync()
live.collection(FanoutItem, name=TABLE, publish=True)
