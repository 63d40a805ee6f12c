"""The app ``livesync serve bench.filtered_app:live`` that ``bench/filtered.py`` benchmarks.

One collection of items, each with an ``owner_id``, and one publication with a parameter,
``bench_by_owner(owner_id)``: every subscription of the benchmark has its own
``owner_id == x`` filter, so the gateway holds as many channels as subscriptions and must
find the one a change concerns through its equality index, not by evaluating every filter.

The per-connection limits are raised (the benchmark opens up to 100 subscriptions per
connection, all at once); everything else comes from the LIVESYNC_* variables (database,
broker, topic) that ``bench/filtered.py`` sets.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Select, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from livesync import Context, LiveSync, Versioned

TABLE = "bench_filtered_items"
PUBLICATION = "bench_by_owner"


class Base(DeclarativeBase):
    pass


class FilteredItem(Versioned, Base):
    """One item per owner in the benchmark (``id == owner_id``); ``data["t"]`` carries the
    writer's clock for latency."""

    __tablename__ = TABLE

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(index=True)
    name: Mapped[str] = mapped_column(String(100))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


# hello + 100 subscriptions arrive in one burst: the default burst (100) would refuse one.
live = LiveSync(max_subscriptions=1000, rate_per_second=1000.0, rate_burst=2000)
live.collection(FilteredItem, name=TABLE)


@live.publication(PUBLICATION)
def by_owner(ctx: Context, owner_id: int) -> Select[tuple[FilteredItem]]:
    """The items of one owner."""
    return select(FilteredItem).where(FilteredItem.owner_id == owner_id)
