"""``livesync demo``: a live console on the embedded default (SQLite + in-memory broker).

A simulator thread writes orders through ordinary SQLAlchemy sessions: new orders, status
changes, refunds, and now and then a bulk statement. A consumer reads the broker, applies
every change set to a :class:`~livesync.replica.Replica`, and prints one line per
transaction. At the end the replica is compared with the database, which is the
convergence guarantee in miniature. The browser dashboards replace this console once the
gateway and the JavaScript client exist.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import threading
import time
from decimal import Decimal
from typing import Any, TextIO

from sqlalchemy import JSON, Numeric, String, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .brokers import Position
from .changes import ChangeSet
from .collections import Collection, Versioned
from .live import LiveSync
from .replica import Cached, Replica


class DemoBase(DeclarativeBase):
    pass


class Order(Versioned, DemoBase):
    """One order of the simulated shop."""

    __tablename__ = "demo_orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer: Mapped[str] = mapped_column(String(40))
    total: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    status: Mapped[str] = mapped_column(String(20), default="new")
    items: Mapped[list[Any]] = mapped_column(JSON, default=list)
    placed_at: Mapped[dt.datetime] = mapped_column(default=lambda: dt.datetime.now(dt.UTC))


CUSTOMERS = ["ada", "grace", "linus", "guido", "barbara", "ken", "margaret", "dennis"]
PRODUCTS = ["keyboard", "monitor", "mouse", "laptop", "dock", "cable", "headset"]


class Simulator:
    """Writes a random mix of ORM operations at about ``rate`` transactions per second."""

    def __init__(self, live: LiveSync, rate: float, seed: int | None = None) -> None:
        self.live = live
        self.rate = rate
        self.random = random.Random(seed)
        self.stop = threading.Event()
        self.transactions = 0

    def step(self) -> None:
        """One transaction: mostly new orders, then status changes, refunds, a bulk update."""
        r = self.random
        with self.live.sessionmaker() as session:
            ids = list(session.scalars(select(Order.id).order_by(Order.id.desc()).limit(20)))
            roll = r.random()
            if roll < 0.45 or not ids:
                items = [r.choice(PRODUCTS) for _ in range(r.randint(1, 3))]
                total = Decimal(r.randint(500, 50_000)) / 100
                session.add(Order(customer=r.choice(CUSTOMERS), total=total, items=items))
            elif roll < 0.8:
                order = session.get(Order, r.choice(ids))
                if order is not None and order.status in ("new", "paid"):
                    order.status = "paid" if order.status == "new" else "shipped"
            elif roll < 0.95:
                order = session.get(Order, r.choice(ids))
                if order is not None and order.status != "refunded":
                    order.status = "refunded"
                    order.items.append("refund-note")  # in-place JSON mutation, captured
            else:
                cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
                session.execute(
                    update(Order)
                    .where(Order.status == "paid", Order.placed_at < cutoff)
                    .values(status="shipped")
                )
            session.commit()
        self.transactions += 1

    def run(self) -> None:
        while not self.stop.is_set():
            self.step()
            self.stop.wait(self.random.expovariate(self.rate))


class Follower:
    """Follows the change topic from a position and applies each change set to a replica."""

    def __init__(self, live: LiveSync, replica: Replica, out: TextIO | None) -> None:
        self.live = live
        self.replica = replica
        self.out = out
        self.position: Position | None = None

    async def start(self) -> None:
        self.position = await self.live.broker.position(self.live.settings.topic)

    async def poll(self, timeout: float) -> int:
        """Apply whatever arrives within ``timeout`` seconds; returns how many change sets."""
        assert self.position is not None, "call start() first"
        entries = await self.live.broker.read(
            self.live.settings.topic, self.position, timeout=timeout
        )
        for entry in entries:
            changeset = ChangeSet.decode(entry.payload)
            self.replica.apply(changeset)
            self.position = Position(self.position.epoch, entry.offset)
            if self.out is not None:
                self.out.write(self._line(entry.offset, changeset))
                self.out.flush()
        return len(entries)

    def _line(self, offset: int, changeset: ChangeSet) -> str:
        described = ", ".join(
            f"{c.op} {c.collection}/{c.id} v{c.version}"
            + ("" if c.doc is None else f" {c.doc.get('status')}")
            for c in changeset.changes
        )
        orders = self.replica.collection("demo_orders")
        revenue = sum(
            Decimal(str(c.doc["total"])) for c in orders.values() if c.doc["status"] != "refunded"
        )
        lag_ms = (time.time() - changeset.ts) * 1000
        return (
            f"#{offset:<5} {described:<46} | orders {len(orders):>4} "
            f"| revenue {revenue:>10,.2f} | lag {lag_ms:5.1f} ms\n"
        )


async def _follow(follower: Follower, until: float, begin: threading.Thread) -> None:
    await follower.start()  # hold the start position before any write happens
    begin.start()
    while time.monotonic() < until:
        await follower.poll(timeout=min(0.5, max(0.0, until - time.monotonic())))


async def _catch_up(follower: Follower) -> None:
    while await follower.poll(timeout=0.2):
        pass
    await follower.live.broker.aclose()


def run_demo(
    live: LiveSync, duration: float, rate: float, out: TextIO, seed: int | None = None
) -> bool:
    """Run simulator, relay and console for ``duration`` seconds; True if all converged."""
    live.upgrade()
    DemoBase.metadata.create_all(live.engine)
    collection = live.collections.get("demo_orders") or live.collection(Order)
    replica = Replica()
    replica.docs.update(
        (("demo_orders", doc_id), cached) for doc_id, cached in _table(live, collection).items()
    )
    follower = Follower(live, replica, out)
    simulator = Simulator(live, rate, seed)
    relay = live.relay()
    relay.start()
    out.write(
        f"livesync demo: {live.settings.database_url} + {live.settings.broker_url}, "
        f"about {rate:g} transactions/s for {duration:g}s (Ctrl-C stops early)\n"
    )
    writer = threading.Thread(target=simulator.run, name="simulator", daemon=True)
    try:
        asyncio.run(_follow(follower, time.monotonic() + duration, writer))
    except KeyboardInterrupt:
        out.write("\nstopping\n")
    finally:
        simulator.stop.set()
        if writer.is_alive():
            writer.join(timeout=5)
        relay.stop()
    asyncio.run(_catch_up(follower))
    converged = _table(live, collection) == replica.collection("demo_orders")
    out.write(
        f"{simulator.transactions} transactions written; the live cache "
        f"{'equals' if converged else 'DIFFERS FROM'} the database "
        f"({len(replica.collection('demo_orders'))} orders)\n"
    )
    return converged


def _table(live: LiveSync, collection: Collection) -> dict[str, Cached]:
    """The collection as the database holds it now: id -> (version, document)."""
    with live.engine.connect() as conn:
        return {doc_id: Cached(version, doc) for doc_id, version, doc in collection.read(conn)}
