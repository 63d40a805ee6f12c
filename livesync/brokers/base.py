"""The broker interface: an ordered, bounded, resumable log per topic.

A broker carries opaque byte payloads (encoded change sets) from writers to gateways.
Every backend gives the same guarantees, proven by ``tests/test_broker_contract.py``:

* **Ordered.** Each topic assigns offsets 1, 2, 3, ... in publish order, with no holes.
* **Bounded.** A topic keeps at most ``history`` recent entries; older ones are trimmed.
* **Resumable.** A reader passes the last :class:`Position` it saw and gets exactly the
  entries after it, or :class:`HistoryLost` when the broker can no longer prove that
  (the epoch changed, or the entries were trimmed). The caller then takes a fresh snapshot.
* **Epochs.** A topic's epoch is a random string that changes whenever its history is lost
  (a Redis restart without persistence, a new in-memory broker). Offsets are only
  comparable within one epoch.

Delivery is at-least-once end to end (the outbox relay may republish a change set the
writer already published); consumers deduplicate by per-document version.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Position:
    """A point in one topic's log: the epoch and the offset of the last entry seen."""

    epoch: str
    offset: int


@dataclass(frozen=True, slots=True)
class Entry:
    """One published payload and the offset the broker gave it."""

    offset: int
    payload: bytes


class HistoryLost(Exception):
    """The requested position is no longer covered by the topic's history.

    Raised by :meth:`Broker.read` when the epoch differs or the entries after the position
    were trimmed. ``current`` is the topic's position now; resume from there after a
    fresh snapshot.
    """

    def __init__(self, requested: Position, current: Position) -> None:
        super().__init__(f"history lost: asked for {requested}, topic is at {current}")
        self.requested = requested
        self.current = current


class Broker(abc.ABC):
    """A log per topic, published to synchronously or asynchronously, read asynchronously.

    ``publish`` is synchronous and thread-safe because it runs inside SQLAlchemy's
    ``after_commit`` machinery of ordinary (sync) sessions; ``publish_async`` serves code
    that already runs in an event loop. Reads are always asynchronous (gateways, relays).
    """

    url: str
    history: int

    @abc.abstractmethod
    def publish(self, topic: str, payload: bytes) -> Position:
        """Append ``payload`` to ``topic`` and return its position. Blocks until stored."""

    def publish_many(self, topic: str, payloads: list[bytes]) -> list[Position]:
        """Publish several payloads in order; backends override it to save round trips."""
        return [self.publish(topic, payload) for payload in payloads]

    @abc.abstractmethod
    async def publish_async(self, topic: str, payload: bytes) -> Position:
        """Like :meth:`publish`, for callers inside an event loop."""

    @abc.abstractmethod
    async def position(self, topic: str) -> Position:
        """The topic's epoch and last offset (0 when nothing was published in this epoch)."""

    @abc.abstractmethod
    async def read(
        self, topic: str, after: Position, *, limit: int = 1000, timeout: float | None = None
    ) -> list[Entry]:
        """Entries with offset > ``after.offset``, oldest first, at most ``limit`` of them.

        Waits up to ``timeout`` seconds for the first entry when there is none yet
        (``None`` means do not wait) and returns ``[]`` on timeout. Raises
        :class:`HistoryLost` if the log cannot continue from ``after``.
        """

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release connections held for async use."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections held for sync use."""
