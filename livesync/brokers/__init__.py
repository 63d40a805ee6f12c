"""Brokers carry encoded change sets from writers to gateways; pick one by URL.

``memory://NAME`` is the in-process broker. Every ``connect_broker`` call with the same
NAME in one process returns the same instance, so a writer and a gateway that are
configured independently still meet; plain ``memory://`` is the instance named ``""``.
A shared instance keeps the ``history`` it was created with, and asking for the same name
with a different ``history`` raises :exc:`ValueError` rather than silently ignoring one
of the two settings. Construct :class:`~livesync.brokers.memory.MemoryBroker` directly
for a private instance.

``redis://``, ``rediss://`` and ``unix://`` URLs (in redis-py's format, database number
included) select :class:`~livesync.brokers.redis.RedisBroker`.
"""

from __future__ import annotations

import threading

from livesync.brokers.base import Broker, Entry, HistoryLost, Position
from livesync.brokers.memory import MemoryBroker
from livesync.brokers.redis import RedisBroker

__all__ = [
    "Broker",
    "Entry",
    "HistoryLost",
    "MemoryBroker",
    "Position",
    "RedisBroker",
    "connect_broker",
]

SCHEMES = ("memory", "redis", "rediss", "unix")

_shared_lock = threading.Lock()
_shared_memory: dict[str, MemoryBroker] = {}


def connect_broker(url: str, *, history: int = 10_000) -> Broker:
    """The broker for ``url``: a shared in-process one for ``memory://``, else Redis.

    Raises :exc:`ValueError` for an unsupported scheme, or for a ``memory://`` name that
    already exists with a different ``history``.
    """
    scheme, separator, rest = url.partition("://")
    scheme = scheme.lower()
    if separator and scheme == "memory":
        with _shared_lock:
            broker = _shared_memory.get(rest)
            if broker is None:
                broker = _shared_memory[rest] = MemoryBroker(history=history, url=url)
            elif broker.history != history:
                raise ValueError(
                    f"{url!r} already exists with history={broker.history}, "
                    f"not {history}; use another name for a differently sized broker"
                )
            return broker
    if separator and scheme in SCHEMES:
        return RedisBroker(url, history=history)
    supported = ", ".join(f"{name}://" for name in SCHEMES)
    raise ValueError(f"unsupported broker URL {url!r}: expected one of {supported}")
