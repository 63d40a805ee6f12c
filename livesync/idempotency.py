"""Stored answers of accepted client writes: a write is applied once, however often it is sent.

Each accepted write or method call inserts one row into ``livesync_requests``, keyed by
``(client, request)``, **in the same transaction** as the write: either both commit or
neither does. A request seen again (resent after a reconnect, to any gateway) finds its
row and gets the stored ``ack`` instead of running again. A concurrent duplicate that
loses the race on the primary key rolls back and answers from the winner's row.

Rejections are never stored (a rejected request leaves nothing behind), so a resent
rejected request is evaluated again, which is what a client retrying after fixing its
data, or after a conflict was resolved, expects.

The :class:`RequestJanitor` deletes rows older than the retention (24 hours by default):
a client that resends a request later than that has it evaluated again. The table is
created by livesync's second migration; :func:`requests_table` mirrors it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from sqlalchemy import Column, Float, Index, MetaData, String, Table, Text, delete, select
from sqlalchemy.engine import Connection, Engine

from .periodic import Periodic

log = logging.getLogger("livesync.idempotency")

REQUESTS_TABLE = "livesync_requests"


def requests_table(metadata: MetaData | None = None) -> Table:
    """The stored-answers table's definition (the migration creates it; this mirrors it)."""
    return Table(
        REQUESTS_TABLE,
        metadata if metadata is not None else MetaData(),
        Column("client", String(64), primary_key=True),
        Column("request", String(64), primary_key=True),
        Column("response", Text, nullable=False),
        Column("created_at", Float, nullable=False),
        Index("ix_livesync_requests_created_at", "created_at"),
    )


class RequestLog:
    """Reads and writes stored answers on a caller's connection (inside its transaction)."""

    def __init__(self, table: Table | None = None) -> None:
        self.table = table if table is not None else requests_table()

    def find(self, connection: Connection, client: str, request: str) -> dict[str, Any] | None:
        """The stored ack of ``(client, request)``, or None."""
        table = self.table
        found = connection.execute(
            select(table.c.response).where(table.c.client == client, table.c.request == request)
        ).scalar_one_or_none()
        if found is None:
            return None
        stored: dict[str, Any] = orjson.loads(found)
        return stored

    def record(
        self,
        connection: Connection,
        client: str,
        request: str,
        ack: dict[str, Any],
        now: float | None = None,
    ) -> None:
        """Store an accepted ack; raises IntegrityError if the request is already stored."""
        connection.execute(
            self.table.insert().values(
                client=client,
                request=request,
                response=orjson.dumps(ack).decode(),
                created_at=time.time() if now is None else now,
            )
        )


class RequestJanitor(Periodic):
    """Deletes stored answers older than ``retention`` seconds, every ``interval`` seconds.

    Every gateway runs one; the deletes are idempotent, so several never disturb each other.
    """

    def __init__(self, engine: Engine, table: Table, *, retention: float, interval: float) -> None:
        super().__init__(interval)
        self._engine = engine
        self._table = table
        self.retention = retention

    def run_once(self, now: float | None = None) -> int:
        """Delete expired rows now; returns how many."""
        cutoff = (time.time() if now is None else now) - self.retention
        with self._engine.begin() as conn:
            result = conn.execute(delete(self._table).where(self._table.c.created_at < cutoff))
        return int(result.rowcount or 0)

    thread_name = "livesync-requests"
    failure = "could not delete expired stored requests"

    def tick(self) -> None:
        self.run_once()
