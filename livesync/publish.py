"""The capture sink: the outbox row inside the transaction, the broker publish after COMMIT.

Two ways to publish after COMMIT:

* **inline**: in the committing thread, before ``commit()`` returns. Used for the in-memory
  broker, where a publish costs microseconds, and so that a consumer in the same process
  sees a change set as soon as ``commit()`` returns.
* **background**: the committing thread only enqueues the encoded payload; one publisher
  thread per process sends queued payloads in commit order, pipelined in batches (one
  Redis round trip for many change sets). The request path no longer waits for Redis; the
  outbox row still guarantees delivery if the process dies with payloads in the queue,
  and an ``atexit`` hook drains the queue on a normal exit.

A publish that fails is logged, never raised: the data is already committed, and the
relay publishes the outbox row once its grace period has passed.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session
from sqlalchemy.util.concurrency import await_only, in_greenlet

from .brokers import Broker
from .changes import ChangeSet
from .outbox import Outbox, OutboxJanitor

log = logging.getLogger("livesync.publish")

Token = tuple[str, bytes, int | None]
_BATCH = 256
_STOP = object()


class Publisher:
    """Implements capture's ``CommitSink`` for one LiveSync."""

    def __init__(
        self,
        broker: Broker,
        topic: Callable[[], str],
        outbox: Outbox | None,
        janitor: OutboxJanitor,
        background: bool,
    ) -> None:
        self._broker = broker
        self._topic = topic
        self._outbox = outbox
        self._janitor = janitor
        self.background = background
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0

    def prepare(self, session: Session, changeset: ChangeSet) -> Token:
        """Encode once, write the outbox row on the session's connection (same transaction)."""
        payload = changeset.encode()
        row_id = None
        if self._outbox is not None:
            row_id = self._outbox.write(session.connection(), changeset, payload)
        return self._topic(), payload, row_id

    def committed(self, changeset: ChangeSet, token: Token) -> None:
        """Publish now, or hand over to the publisher thread; never raises."""
        if self.background:
            self._enqueue(token)
            return
        topic, payload, row_id = token
        try:
            if in_greenlet():  # inside AsyncSession: await instead of blocking the loop
                await_only(self._broker.publish_async(topic, payload))
            else:
                self._broker.publish(topic, payload)
        except Exception:
            self._failed([token], changeset.id)
            return
        if row_id is not None:
            self._janitor.published(row_id)

    # ------------------------------------------------------------------ background thread
    def _enqueue(self, token: Token) -> None:
        with self._lock:
            if self._thread is None or self._pid != os.getpid():
                self._start()
            self._pending += 1
        self._queue.put(token)

    def _start(self) -> None:
        self._pid = os.getpid()
        self._queue = queue.SimpleQueue()  # after fork(), the parent's queue is not ours
        self._pending = 0
        self._thread = threading.Thread(target=self._run, name="livesync-publisher", daemon=True)
        self._thread.start()
        _live_publishers.add(self)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch: list[Token] = [first]
            while len(batch) < _BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    self._queue.put(_STOP)
                    break
                batch.append(item)
            self._send(batch)
            with self._lock:
                self._pending -= len(batch)
                if self._pending == 0:
                    self._idle.notify_all()

    def _send(self, batch: list[Token]) -> None:
        by_topic: dict[str, list[Token]] = {}
        for token in batch:
            by_topic.setdefault(token[0], []).append(token)
        for topic, tokens in by_topic.items():
            try:
                self._broker.publish_many(topic, [payload for _, payload, _ in tokens])
            except Exception:
                self._failed(tokens, None)
                continue
            for _, _, row_id in tokens:
                if row_id is not None:
                    self._janitor.published(row_id)

    def _failed(self, tokens: list[Token], changeset_id: str | None) -> None:
        described = changeset_id or f"{len(tokens)} change sets"
        if all(row_id is not None for _, _, row_id in tokens):
            log.warning("publish of %s failed; the relay will publish it", described)
        else:
            log.exception("publish of %s failed and no outbox holds it", described)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued payload was sent (or failed); False on timeout."""
        with self._lock:
            if self._thread is None or self._pid != os.getpid():
                return True
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Drain the queue, then stop the thread."""
        self.flush(timeout)
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None and self._pid == os.getpid():
            self._queue.put(_STOP)
            thread.join(timeout)
        _live_publishers.discard(self)


_live_publishers: weakref.WeakSet[Publisher] = weakref.WeakSet()


@atexit.register
def _drain_at_exit() -> None:
    for publisher in list(_live_publishers):
        publisher.close(timeout=5.0)
