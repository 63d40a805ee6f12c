"""An in-process broker: the same contract as Redis, for the embedded demo and tests.

Writers publish from ordinary threads while readers wait in event loops, possibly several
loops in several threads. Each topic therefore keeps its state under one lock and wakes
waiting readers through ``loop.call_soon_threadsafe``: an asyncio future may only be
resolved from its own loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field

from livesync.brokers.base import Broker, Entry, HistoryLost, Position

_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]


@dataclass(eq=False)
class _Topic:
    """One topic's log; every field is guarded by the broker's lock."""

    entries: deque[Entry]
    last: int = 0
    waiters: set[_Waiter] = field(default_factory=set)

    def first_retained(self) -> int:
        """The oldest offset still kept (``last + 1`` when nothing is kept)."""
        return self.entries[0].offset if self.entries else self.last + 1


def _wake(future: asyncio.Future[None]) -> None:
    # Runs in the future's own loop; the reader may have timed out (cancelled) meanwhile.
    if not future.done():
        future.set_result(None)


class MemoryBroker(Broker):
    """Topics held in this process only; the epoch is fixed per broker instance.

    A new instance (a new process) is a new epoch, so positions saved against an older
    instance raise :class:`HistoryLost` instead of silently matching new offsets.
    """

    def __init__(self, *, history: int = 10_000, url: str = "memory://") -> None:
        if history < 1:
            raise ValueError(f"history must be at least 1, got {history}")
        self.url = url
        self.history = history
        self.epoch = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._topics: dict[str, _Topic] = {}

    def _topic(self, name: str) -> _Topic:
        # Caller holds the lock.
        topic = self._topics.get(name)
        if topic is None:
            topic = self._topics[name] = _Topic(deque(maxlen=self.history))
        return topic

    def publish(self, topic: str, payload: bytes) -> Position:
        """Append under the lock, then wake the topic's readers outside of it."""
        with self._lock:
            log = self._topic(topic)
            log.last += 1
            log.entries.append(Entry(log.last, bytes(payload)))
            position = Position(self.epoch, log.last)
            waiters, log.waiters = log.waiters, set()
        for loop, future in waiters:
            # RuntimeError: the reader's loop is closed and nobody is left to wake.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_wake, future)
        return position

    async def publish_async(self, topic: str, payload: bytes) -> Position:
        """Publishing never blocks on I/O here, so this is :meth:`publish`."""
        return self.publish(topic, payload)

    async def position(self, topic: str) -> Position:
        with self._lock:
            return Position(self.epoch, self._topic(topic).last)

    async def read(
        self, topic: str, after: Position, *, limit: int = 1000, timeout: float | None = None
    ) -> list[Entry]:
        """See :meth:`Broker.read`; a position ahead of the log is lost history too."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            with self._lock:
                log = self._topic(topic)
                current = Position(self.epoch, log.last)
                if (
                    after.epoch != self.epoch
                    or after.offset > log.last
                    or after.offset < log.first_retained() - 1
                ):
                    raise HistoryLost(after, current)
                if after.offset < log.last:
                    start = after.offset - log.first_retained() + 1
                    return list(itertools.islice(log.entries, start, start + limit))
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is None or remaining <= 0:
                    return []
                # Registered under the lock, so a publish cannot slip in unnoticed.
                waiter: _Waiter = (loop, loop.create_future())
                log.waiters.add(waiter)
            try:
                await asyncio.wait_for(waiter[1], remaining)
            except TimeoutError:
                pass
            finally:
                with self._lock:
                    log.waiters.discard(waiter)

    async def aclose(self) -> None:
        """Nothing to release: a shared instance stays usable by its other users."""

    def close(self) -> None:
        """Nothing to release: a shared instance stays usable by its other users."""
