"""The transactional outbox: change sets survive a writer that dies between COMMIT and publish.

Life of one row:

1. Capture seals a transaction's change set and :meth:`Outbox.write` inserts it as one
   row, inside the same database transaction (one extra INSERT per transaction, not per
   document). A rollback removes it with everything else.
2. After COMMIT the writer publishes the payload at once and hands the row id to the
   :class:`OutboxJanitor`, which deletes published rows in batches from a background
   thread, so the cleanup never adds a statement to the application's transactions.
3. If the writer died (or the broker was down), the row stays. The :class:`Relay` claims
   rows older than ``outbox_grace`` seconds, publishes them in id order and deletes them
   in one transaction. On PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets several relays run
   without ever working on the same row; on SQLite the database lock serialises them.

Delivery is therefore at-least-once: a writer that published but died before its janitor
ran has its change set published again by the relay. Consumers drop the duplicate because
its per-document versions are not newer than what they hold.

The table is created by livesync's Alembic migration (``migrations/``); :func:`outbox_table`
must stay identical to it, which ``tests/test_migrations.py`` checks.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    any_,
    bindparam,
    delete,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from .changes import ChangeSet
from .periodic import Periodic

log = logging.getLogger("livesync.outbox")

OUTBOX_TABLE = "livesync_outbox"


def outbox_table(metadata: MetaData | None = None) -> Table:
    """The outbox table's definition (the migration creates it; this mirrors it)."""
    return Table(
        OUTBOX_TABLE,
        metadata if metadata is not None else MetaData(),
        # BIGINT on PostgreSQL; INTEGER on SQLite, where only that is a rowid alias.
        Column(
            "id",
            BigInteger().with_variant(Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        Column("changeset_id", String(32), nullable=False),
        Column("payload", Text, nullable=False),
        Column("created_at", Float, nullable=False),
    )


class Outbox:
    """Writes outbox rows inside the application's transactions."""

    def __init__(self, table: Table | None = None) -> None:
        self.table = table if table is not None else outbox_table()
        self._compiled: dict[str, tuple[str, tuple[str, ...] | None]] = {}

    def write(self, connection: Connection, changeset: ChangeSet, payload: bytes) -> int:
        """Insert the change set's row on ``connection`` (inside the open transaction).

        INSERT ... RETURNING id, compiled once per dialect, with the values as bound
        parameters. Sent on the DBAPI cursor for the stdlib SQLite driver and with
        ``exec_driver_sql`` otherwise: on this hot path SQLAlchemy's per-execution
        cache-key and parameter processing cost as much as the INSERT itself. The columns
        need no type processing (text and float).
        """
        sql, positions = self._sql(connection)
        params = {
            "changeset_id": changeset.id,
            "payload": payload.decode("utf-8"),
            "created_at": changeset.ts,
        }
        args: Any = params if positions is None else tuple(params[k] for k in positions)
        dialect = connection.dialect
        if dialect.driver != "pysqlite" or dialect.is_async:
            return int(connection.exec_driver_sql(sql, args).scalar_one())
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(sql, args)
            found: Any = cursor.fetchone()
        except dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(
                sql, args, exc, dialect.loaded_dbapi.Error, dialect=dialect
            ) from exc
        finally:
            cursor.close()
        return int(found[0])

    def _sql(self, connection: Connection) -> tuple[str, tuple[str, ...] | None]:
        dialect = connection.dialect
        found = self._compiled.get(dialect.name)
        if found is None:
            statement = self.table.insert().returning(self.table.c.id)
            compiled = statement.compile(
                dialect=dialect, column_keys=["changeset_id", "payload", "created_at"]
            )
            order = compiled.positiontup
            found = (str(compiled), tuple(order) if order else None)
            self._compiled[dialect.name] = found
        return found


class OutboxJanitor:
    """Deletes rows whose change sets were already published, in batches, off the hot path.

    The background thread starts on first use and is restarted after ``fork()`` (a
    pre-forking web server imports the app once, then forks workers). Ids not yet deleted
    when the process dies are harmless: the relay republishes them, and consumers drop
    the duplicates by version.
    """

    def __init__(self, engine: Engine, table: Table, interval: float, batch: int = 1000) -> None:
        self._engine = engine
        self._table = table
        self._interval = interval
        self._batch = batch
        self._pending: list[int] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        # PostgreSQL: one array parameter instead of an IN list of up to `batch` parameters,
        # so the statement text never changes (the driver prepares it once) and neither
        # side parses a thousand placeholders per batch.
        ids = bindparam("ids", type_=ARRAY(BigInteger()))
        self._delete_any = delete(table).where(table.c.id == any_(ids))

    def published(self, row_id: int) -> None:
        """Schedule ``row_id`` for deletion; never blocks on the database."""
        with self._lock:
            if self._stopped:
                return
            self._pending.append(row_id)
            if self._thread is None or self._pid != os.getpid():
                self._start()
            if len(self._pending) >= self._batch:
                self._wake.set()

    def _start(self) -> None:
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="livesync-janitor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait(self._interval)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Delete every pending row now; returns how many ids were processed."""
        with self._lock:
            ids, self._pending = self._pending, []
        if not ids:
            return 0
        try:
            with self._engine.begin() as conn:
                for start in range(0, len(ids), self._batch):
                    chunk = ids[start : start + self._batch]
                    if conn.dialect.name == "postgresql":
                        conn.execute(self._delete_any, {"ids": chunk})
                    else:
                        conn.execute(delete(self._table).where(self._table.c.id.in_(chunk)))
        except Exception:
            log.warning("could not delete %d published outbox rows; the relay will", len(ids))
            return 0
        return len(ids)

    def close(self) -> None:
        """Stop the thread after a final flush."""
        with self._lock:
            self._stopped = True
        self._wake.set()
        if self._thread is not None and self._pid == os.getpid():
            self._thread.join(timeout=5)
        self._stopped = False
        self.flush()
        self._stopped = True


class Relay(Periodic):
    """Publishes outbox rows that their writers left behind, then deletes them.

    ``publish`` is the broker's synchronous publish bound to the change topic. A failure
    to publish rolls the claim back, so the rows stay for the next attempt.
    """

    def __init__(
        self,
        engine: Engine,
        table: Table,
        publish: Callable[[bytes], Any],
        *,
        grace: float,
        batch: int,
        interval: float,
    ) -> None:
        super().__init__(interval)
        self._engine = engine
        self._table = table
        self._publish = publish
        self.grace = grace
        self.batch = batch

    def run_once(self, now: float | None = None) -> int:
        """Claim, publish and delete one batch of old rows; returns how many were published."""
        cutoff = (time.time() if now is None else now) - self.grace
        table = self._table
        claim = (
            select(table.c.id)
            .where(table.c.created_at < cutoff)
            .order_by(table.c.id)
            .limit(self.batch)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        with self._engine.begin() as conn:
            rows = conn.execute(
                delete(table).where(table.c.id.in_(claim)).returning(table.c.id, table.c.payload)
            ).all()
            for _, payload in sorted(rows, key=lambda r: int(r[0])):
                self._publish(payload.encode("utf-8"))
        if rows:
            log.info("relay published %d outbox rows", len(rows))
        return len(rows)

    def backlog(self) -> int:
        """Rows currently in the outbox (published-but-not-yet-deleted ones included)."""
        with self._engine.connect() as conn:
            count = select(func.count()).select_from(self._table)
            return int(conn.execute(count).scalar_one())

    thread_name = "livesync-relay"
    failure = "outbox relay failed"

    def tick(self) -> None:
        """Publish batches until the outbox holds less than a full one."""
        while self.run_once() >= self.batch and not self.stopping:
            pass
