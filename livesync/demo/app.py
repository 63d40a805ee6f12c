"""The dashboard's live side: what the page may read, what it may write, and the page itself.

:func:`register` declares everything on a :class:`~livesync.LiveSync` (any database, any
broker), :func:`setup` creates the tables, and :func:`mount` serves the page next to the
websocket. ``examples/dashboard/app.py`` calls all three for ``livesync serve``;
``livesync demo`` does the same in one process with the simulator.

Who is who: the page sends the operator's name as its token (``?as=ada``), and
:func:`operator` turns it into the identity the write rules see. That is a stand-in for a
real sign-in; a real app verifies a signed token instead (``live.tokens``).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import Select, select, text

from ..live import LiveSync
from ..publications import Context, Forbidden
from .models import Alert, Base, KpiDay, KpiSecond, Order

STATIC = Path(__file__).resolve().with_name("static")

#: The roster the page offers; the on-call engineer alone may acknowledge critical alerts.
OPERATORS = {"ada": "Ada Lovelace", "grace": "Grace Hopper", "linus": "Linus Torvalds"}
ON_CALL = "ada"

Status = Literal["new", "paid", "shipped", "refunded"]


def operator(token: str | None, request: Any) -> dict[str, Any]:
    """The identity of a connection: ``{"name": ..., "on_call": bool}``; unknown: a guest."""
    name = token if token in OPERATORS else "guest"
    return {"name": name, "on_call": name == ON_CALL}


# ---------------------------------------------------------------------- publications
def recent_orders(
    ctx: Context, status: Status | None = None, limit: Annotated[int, Field(ge=1, le=100)] = 20
) -> Select[Any]:
    """The newest ``limit`` orders, of one status or all: a filtered, windowed publication
    (the gateway keeps the window in memory and pushes newcomers in, the last out)."""
    query = select(Order).order_by(Order.created_at.desc()).limit(limit)
    return query if status is None else query.where(Order.status == status)


def kpis(ctx: Context) -> Select[Any]:
    """The totals of yesterday and later (UTC): the page shows the latest day, so its tiles
    roll over at midnight without resubscribing. A filter, not a window: at most a few rows."""
    since = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    return select(KpiDay).where(KpiDay.day >= since)


def ticks(ctx: Context, seconds: Annotated[int, Field(ge=10, le=600)] = 120) -> Select[Any]:
    """The last ``seconds`` seconds of activity (one document per second with writes)."""
    return select(KpiSecond).order_by(KpiSecond.second.desc()).limit(seconds)


def alerts(ctx: Context, limit: Annotated[int, Field(ge=1, le=100)] = 40) -> Select[Any]:
    """Open alerts first, newest first within each group (false sorts before true)."""
    return select(Alert).order_by(Alert.acknowledged.asc(), Alert.created_at.desc()).limit(limit)


# ---------------------------------------------------------------------- client writes
class AlertWrite(BaseModel):
    """What a client may write to an alert: acknowledge it, in its own name."""

    id: int
    acknowledged: bool
    acknowledged_by: str | None = Field(default=None, min_length=1, max_length=40)


def may_acknowledge(ctx: Context, old: dict[str, Any], new: dict[str, Any]) -> bool:
    """The update rule for alerts; raises Forbidden with a message the page shows.

    An alert can be acknowledged once, never reopened, only in the writer's own name, and
    a critical one only by the on-call engineer. (The schema already refused every other
    field; ``acknowledged_at`` is stamped by the model.)
    """
    me = (ctx.identity or {}).get("name", "guest")
    if old["acknowledged"]:
        raise Forbidden(f"already acknowledged by {old['acknowledged_by'] or 'someone'}")
    if not new["acknowledged"]:
        raise Forbidden("alerts can only be acknowledged")
    if new["acknowledged_by"] != me:
        raise Forbidden(f"acknowledge in your own name ({me})")
    if old["severity"] == "critical" and me != ON_CALL:
        raise Forbidden(
            f"only the on-call engineer ({OPERATORS[ON_CALL]}) may acknowledge critical alerts"
        )
    return True


# ---------------------------------------------------------------------- wiring
def register(live: LiveSync) -> LiveSync:
    """Declare the dashboard's collections, publications, write rule and sign-in on ``live``."""
    live.collection(Order, name="orders")
    live.collection(Alert, name="alerts")
    live.collection(KpiDay, name="kpis")
    live.collection(KpiSecond, name="ticks")
    for name, function in (
        ("recent_orders", recent_orders),
        ("kpis", kpis),
        ("ticks", ticks),
        ("alerts", alerts),
    ):
        live.publication(name)(function)
    live.allow(Alert, schema=AlertWrite, ids="client", update=may_acknowledge)
    live.authenticate(operator)
    return live


def setup(live: LiveSync) -> None:
    """Create the dashboard's tables and livesync's own (both idempotent).

    Safe when several processes start at once (two gateways and the simulator): on
    PostgreSQL they take turns under an advisory lock, since concurrent ``CREATE TABLE``
    statements for the same table fail instead of waiting.
    """
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


_SETUP_LOCK = 7_412_604_431  # any number: this demo's advisory lock key


def mount(live: LiveSync) -> Any:
    """Serve the page at ``/`` and its files at ``/static/`` on ``live.app``; returns the app.

    The page imports the client from ``/live/client/``, which the gateway serves itself.
    """
    from sanic.response import json

    app = live.app
    app.static("/", str(STATIC / "index.html"), name="dashboard_page")
    app.static("/static/", str(STATIC), name="dashboard_static")

    async def roster(request: Any) -> Any:
        return json({"operators": OPERATORS, "on_call": ON_CALL})

    app.add_route(roster, "/operators", name="dashboard_operators")
    return app
