"""The dashboard's tables: orders, alerts, and the two small KPI tables the page reads.

The KPI tables exist so that the page never needs all of today's orders: every write to an
order also updates, in the same transaction, one row of ``kpi_days`` (today's totals, the
tiles) and one row of ``kpi_seconds`` (that second's counts, the chart). A publication of
"the latest day" and one of "the last 120 seconds" are then a few small documents whatever
the order volume, and each transaction reaches the page as one patch per table.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, DateTime, Index, Numeric, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, validates

from ..collections import Versioned

STATUSES = ("new", "paid", "shipped", "refunded")
SEVERITIES = ("info", "warning", "critical")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    """The dashboard's own metadata: ``Base.metadata.create_all`` makes its tables."""


class Order(Versioned, Base):
    """An order: ``new`` -> ``paid`` -> ``shipped``; ``paid`` or ``shipped`` -> ``refunded``.

    ``items`` is a JSON list of ``{"sku", "qty", "price"}``; a refund marks each item
    ``"refunded": true`` in place, which livesync publishes as a patch of that path.
    """

    __tablename__ = "orders"
    __table_args__ = (
        Index("orders_created_at", "created_at"),
        Index("orders_status_created_at", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer: Mapped[str] = mapped_column(String(60))
    amount: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    status: Mapped[str] = mapped_column(String(10), default="new")
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class Alert(Versioned, Base):
    """Something an operator should look at; clients may only acknowledge it.

    Setting ``acknowledged`` stamps ``acknowledged_at`` (server time), whoever sets it:
    a client write through ``live.allow`` or the simulator's auto-resolve.
    """

    __tablename__ = "alerts"
    __table_args__ = (Index("alerts_open", "acknowledged", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    severity: Mapped[str] = mapped_column(String(10))
    message: Mapped[str] = mapped_column(String(200))
    order_id: Mapped[int | None] = mapped_column(default=None)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    acknowledged: Mapped[bool] = mapped_column(default=False)
    acknowledged_by: Mapped[str | None] = mapped_column(String(40), default=None)
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), default=None
    )

    @validates("acknowledged")
    def _stamp(self, key: str, value: bool) -> bool:
        if value and not self.acknowledged:
            self.acknowledged_at = utcnow()
        return value


class KpiDay(Versioned, Base):
    """Today's totals (UTC days): the KPI tiles. ``revenue`` is paid minus refunded."""

    __tablename__ = "kpi_days"

    day: Mapped[dt.date] = mapped_column(primary_key=True)
    orders: Mapped[int] = mapped_column(default=0)
    revenue: Mapped[Decimal] = mapped_column(Numeric(14, 2), default=Decimal(0))
    refunds: Mapped[int] = mapped_column(default=0)
    refunded: Mapped[Decimal] = mapped_column(Numeric(14, 2), default=Decimal(0))


class KpiSecond(Versioned, Base):
    """One second of activity (``second`` is Unix time): the live chart.

    ``written_at`` is the ``time.time()`` of the last transaction that touched the row,
    so a page can measure how far behind the writers it is (commit to render).
    """

    __tablename__ = "kpi_seconds"

    second: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    orders: Mapped[int] = mapped_column(default=0)
    revenue: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal(0))
    refunds: Mapped[int] = mapped_column(default=0)
    writes: Mapped[int] = mapped_column(default=0)
    written_at: Mapped[float] = mapped_column(default=0.0)
