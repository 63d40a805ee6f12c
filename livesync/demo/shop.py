"""The shop's writes: ordinary SQLAlchemy code, each step one call inside a session.

Every function changes an order (or an alert) and keeps the KPI rows right in the same
transaction, so the totals a page shows always agree with the orders it shows. The caller
commits (:class:`Writer` does); livesync publishes the commit as one change set.

Concurrency is optimistic: rows are not locked, and the version column livesync requires
makes an UPDATE of a row that another writer changed meanwhile fail (``StaleDataError``),
as does creating a KPI row that another writer created first (``IntegrityError``). The
:class:`Writer` rolls back and runs the step again on fresh rows.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from ..live import LiveSync
from .models import Alert, KpiDay, KpiSecond, Order, utcnow

log = logging.getLogger("livesync.demo")

T = TypeVar("T")

CUSTOMERS = (
    "Northwind Traders", "Acme Corp", "Globex", "Initech", "Umbrella Retail", "Hooli",
    "Stark Supplies", "Wayne Outfitters", "Tyrell Home", "Cyberdyne Labs", "Soylent Foods",
    "Vandelay Imports", "Pied Piper", "Wonka Sweets", "Oceanic Travel", "Monarch Books",
)  # fmt: skip
PRODUCTS = (
    ("KB-87", "Mechanical keyboard", Decimal("129.00")),
    ("MN-27", '27" monitor', Decimal("349.00")),
    ("MS-01", "Wireless mouse", Decimal("39.90")),
    ("LP-14", "14\" laptop", Decimal("1299.00")),
    ("DK-04", "USB-C dock", Decimal("189.00")),
    ("CB-2M", "Cable, 2 m", Decimal("12.50")),
    ("HS-50", "Headset", Decimal("89.00")),
    ("WC-4K", "4K webcam", Decimal("149.00")),
)  # fmt: skip

#: Refunds at or above these amounts raise an alert of that severity.
REFUND_ALERTS = ((Decimal("4500"), "critical"), (Decimal("3000"), "warning"))

_RETRY = (IntegrityError, StaleDataError, OperationalError)
_KPI_ROWS = "livesync.demo.kpi"  # session.info key: the KPI rows this session holds


class Writer:
    """Runs shop steps, one transaction each, on one long-lived session.

    The session keeps what it loaded across commits (``expire_on_commit=False``), so the
    KPI rows every step updates are not read again each time: a step costs its INSERTs
    and UPDATEs and the COMMIT. If another process changed such a row meanwhile, the
    UPDATE's version check fails; :meth:`run` rolls back (which expires every loaded row)
    and runs the step again, up to ``attempts`` times. Not thread-safe: one thread per
    Writer. Objects a step returns stay readable after the commit.
    """

    def __init__(self, live: LiveSync, attempts: int = 5) -> None:
        self.session: Session = live.sessionmaker(expire_on_commit=False)
        self.attempts = attempts

    def run(self, step: Callable[[Session], T]) -> T:
        """``step(session)``, committed; retried when a concurrent writer got there first."""
        for attempt in range(1, self.attempts + 1):
            try:
                result = step(self.session)
                self.session.commit()
                return result
            except _RETRY as exc:
                self.session.rollback()
                if attempt == self.attempts:
                    raise
                log.debug("retrying a shop step (%s)", type(exc).__name__)
                time.sleep(0.002 * attempt)
            except BaseException:
                self.session.rollback()
                raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.session.close()


def transaction(live: LiveSync, step: Callable[[Session], T]) -> T:
    """One step on a session of its own (see :class:`Writer`), closed afterwards."""
    writer = Writer(live)
    try:
        return writer.run(step)
    finally:
        writer.close()


def _kpi_row(session: Session, model: type[T], key: Any, **zeros: Any) -> T:
    """The KPI row ``key``: the one this session already holds, else loaded, else new."""
    held: dict[type[Any], Any] = session.info.setdefault(_KPI_ROWS, {})
    row = held.get(model)
    # A row from a rolled-back INSERT has left the session; an expired one reloads itself.
    if row is None or row not in session or getattr(row, _pk(model)) != key:
        row = session.get(model, key)
        if row is None:
            row = model(**{_pk(model): key, **zeros})
            session.add(row)
        held[model] = row
    return row


def _pk(model: type[Any]) -> str:
    return "day" if model is KpiDay else "second"


def _tally(
    session: Session,
    *,
    orders: int = 0,
    revenue: Decimal = Decimal(0),
    refunds: int = 0,
    refunded: Decimal = Decimal(0),
) -> None:
    """Add to today's totals and to this second's row (creating them when missing)."""
    now = time.time()
    today = dt.datetime.fromtimestamp(now, dt.UTC).date()
    zero = Decimal(0)
    day = _kpi_row(session, KpiDay, today, orders=0, revenue=zero, refunds=0, refunded=zero)
    day.orders += orders
    day.revenue += revenue - refunded
    day.refunds += refunds
    day.refunded += refunded
    second = _kpi_row(session, KpiSecond, int(now), orders=0, revenue=zero, refunds=0, writes=0)
    second.orders += orders
    second.revenue += revenue - refunded
    second.refunds += refunds
    second.writes += 1
    second.written_at = now


def place_order(session: Session, rng: random.Random, customer: str | None = None) -> Order:
    """A new order of one to four products."""
    items: list[dict[str, Any]] = []
    for sku, name, price in rng.sample(PRODUCTS, rng.randint(1, 4)):
        items.append({"sku": sku, "name": name, "qty": rng.randint(1, 3), "price": str(price)})
    amount = sum((Decimal(i["price"]) * i["qty"] for i in items), Decimal(0))
    order = Order(customer=customer or rng.choice(CUSTOMERS), amount=amount, items=items)
    session.add(order)
    _tally(session, orders=1)
    return order


def advance(session: Session, order_id: int) -> Order | None:
    """``new`` -> ``paid`` (counted as revenue) or ``paid`` -> ``shipped``; None otherwise."""
    order = session.get(Order, order_id)
    if order is None or order.status not in ("new", "paid"):
        return None
    if order.status == "new":
        order.status = "paid"
        _tally(session, revenue=order.amount)
    else:
        order.status = "shipped"
        _tally(session)
    return order


def refund(
    session: Session, order_id: int, alert: bool = True
) -> tuple[Order, Alert | None] | None:
    """Refund a paid or shipped order; None if it is neither.

    With ``alert``, a refund of at least a :data:`REFUND_ALERTS` threshold also raises an
    alert of that severity, returned with the order.
    """
    order = session.get(Order, order_id)
    if order is None or order.status not in ("paid", "shipped"):
        return None
    order.status = "refunded"
    for item in order.items:
        item["refunded"] = True  # in place: livesync notices and publishes a patch
    _tally(session, refunds=1, refunded=order.amount)
    raised = None
    severity = next((s for limit, s in REFUND_ALERTS if order.amount >= limit), None)
    if alert and severity is not None:
        message = f"Refund of ${order.amount:,.2f} on order #{order.id} ({order.customer})"
        raised = raise_alert(session, severity, message, order.id)
    return order, raised


def raise_alert(
    session: Session, severity: str, message: str, order_id: int | None = None
) -> Alert:
    """A new open alert."""
    alert = Alert(severity=severity, message=message, order_id=order_id)
    session.add(alert)
    return alert


def auto_resolve(session: Session, older_than: float) -> int:
    """Acknowledge, as ``auto-resolve``, the open alerts raised more than ``older_than``
    seconds ago (an ORM bulk UPDATE, which livesync captures too); returns how many."""
    cutoff = utcnow() - dt.timedelta(seconds=older_than)
    result = session.execute(
        update(Alert)
        .where(Alert.acknowledged.is_(False), Alert.created_at < cutoff)
        .values(acknowledged=True, acknowledged_by="auto-resolve", acknowledged_at=utcnow())
    )
    return int(getattr(result, "rowcount", 0) or 0)
