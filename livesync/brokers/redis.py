"""A broker on Redis Streams: one stream per topic, entry ids ``<offset>-0``.

Each topic owns three keys sharing one hash tag, so the scripts also run on Redis Cluster:

* ``{prefix:topic}:log`` - the stream; each entry holds the payload in field ``d``.
* ``{prefix:topic}:seq`` - the last offset handed out (an integer string).
* ``{prefix:topic}:epoch`` - a random string naming the current history.

Offsets come from ``INCR`` inside the same Lua script that appends the entry, so they are
1, 2, 3, ... without holes even with many publishers. When the epoch or the counter is
missing (a restart without persistence, an eviction), the script starts a new epoch at
offset 0 and drops whatever is left of the stream: a half-lost history cannot be trusted.

Trimming uses ``MAXLEN ~ history``, which Redis applies per radix-tree node, so a stream
may keep somewhat more than ``history`` entries. Coverage is never inferred from the
setting: :meth:`RedisBroker.read` checks that the first entry it got is exactly the one
after the requested offset.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis
import redis.asyncio
from redis.commands.core import AsyncScript, Script

from livesync.brokers.base import Broker, Entry, HistoryLost, Position

# KEYS: log, seq, epoch. ARGV[1]: the epoch to start if the history is missing or partial.
# Leaves the topic with both an epoch and a counter; `epoch` and `seq` hold them afterwards.
_ENSURE = """
local epoch = redis.call('GET', KEYS[3])
local seq = redis.call('GET', KEYS[2])
if not epoch or not seq then
  redis.call('DEL', KEYS[1])
  epoch = ARGV[1]
  seq = '0'
  redis.call('SET', KEYS[3], epoch)
  redis.call('SET', KEYS[2], seq)
end
"""

# ARGV[2]: payload, ARGV[3]: approximate MAXLEN. Returns {epoch, offset}.
_PUBLISH = (
    _ENSURE
    + """
local n = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], string.format('%d-0', n), 'd', ARGV[2])
return {epoch, n}
"""
)

# Returns {epoch, last offset}; creates a fresh epoch so readers can start at offset 0.
_POSITION = _ENSURE + "return {epoch, seq}\n"


# Longest single XREAD BLOCK: redis-py 8 gives sockets a 5 s read timeout by default, and a
# blocking command that outlives it fails, so long waits are taken in slices.
_MAX_BLOCK = 2.0


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _position(reply: list[Any]) -> Position:
    return Position(_text(reply[0]), int(reply[1]))


@dataclass(frozen=True, slots=True)
class _SyncClient:
    redis: redis.Redis
    publish: Script


@dataclass(frozen=True, slots=True)
class _AsyncClient:
    redis: redis.asyncio.Redis
    publish: AsyncScript
    position: AsyncScript
    block: float  # seconds one XREAD BLOCK may last on this client's sockets


class RedisBroker(Broker):
    """Topics as Redis streams, shared by every process that uses the same server.

    Sync and async calls use separate clients: a thread-safe ``redis.Redis`` for
    :meth:`publish`, and one ``redis.asyncio.Redis`` per event loop, because an asyncio
    connection is bound to the loop it was opened in. Call :meth:`aclose` in every loop
    that used the broker. Connection errors propagate as ``redis`` exceptions (after
    redis-py's own retries, which may publish an entry twice: delivery is at-least-once).
    """

    def __init__(self, url: str, *, history: int = 10_000, prefix: str = "livesync") -> None:
        if history < 1:
            raise ValueError(f"history must be at least 1, got {history}")
        if "decode_responses" in parse_qs(urlsplit(url).query):
            raise ValueError("the broker's Redis URL must not set decode_responses")
        self.url = url
        self.history = history
        self.prefix = prefix
        self._lock = threading.Lock()
        self._sync: _SyncClient | None = None
        self._async: dict[asyncio.AbstractEventLoop, _AsyncClient] = {}

    def keys(self, topic: str) -> tuple[str, str, str]:
        """The topic's stream, counter and epoch keys, in the order the scripts expect."""
        tag = f"{{{self.prefix}:{topic}}}"
        return f"{tag}:log", f"{tag}:seq", f"{tag}:epoch"

    def _sync_client(self) -> _SyncClient:
        with self._lock:
            if self._sync is None:
                client = redis.Redis.from_url(self.url)
                self._sync = _SyncClient(client, client.register_script(_PUBLISH))
            return self._sync

    def _async_client(self) -> _AsyncClient:
        loop = asyncio.get_running_loop()
        with self._lock:  # loops in other threads may use the broker at the same time
            return self._async.get(loop) or self._new_async_client(loop)

    def _new_async_client(self, loop: asyncio.AbstractEventLoop) -> _AsyncClient:
        # Clients of closed loops are unusable; forget them rather than reuse them.
        for stale in [other for other in self._async if other.is_closed()]:
            del self._async[stale]
        client = redis.asyncio.Redis.from_url(self.url)
        socket_timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
        block = _MAX_BLOCK if socket_timeout is None else min(_MAX_BLOCK, socket_timeout / 2)
        found = self._async[loop] = _AsyncClient(
            client, client.register_script(_PUBLISH), client.register_script(_POSITION), block
        )
        return found

    def _publish_args(self, payload: bytes) -> list[bytes | str | int]:
        return [uuid.uuid4().hex, payload, self.history]

    def publish(self, topic: str, payload: bytes) -> Position:
        script = self._sync_client().publish
        return _position(script(keys=self.keys(topic), args=self._publish_args(payload)))

    def publish_many(self, topic: str, payloads: list[bytes]) -> list[Position]:
        """One pipelined round trip for the whole batch; offsets follow the list order."""
        if len(payloads) == 1:  # a pipeline costs more client CPU than it saves here
            return [self.publish(topic, payloads[0])]
        client = self._sync_client()
        keys = self.keys(topic)
        with client.redis.pipeline(transaction=False) as pipe:
            for payload in payloads:
                client.publish(keys=keys, args=self._publish_args(payload), client=pipe)
            return [_position(reply) for reply in pipe.execute()]

    async def publish_async(self, topic: str, payload: bytes) -> Position:
        script = self._async_client().publish
        return _position(await script(keys=self.keys(topic), args=self._publish_args(payload)))

    async def position(self, topic: str) -> Position:
        script = self._async_client().position
        return _position(await script(keys=self.keys(topic), args=[uuid.uuid4().hex]))

    async def read(
        self, topic: str, after: Position, *, limit: int = 1000, timeout: float | None = None
    ) -> list[Entry]:
        """See :meth:`Broker.read`; a position ahead of the log is lost history too.

        Every answer comes from one ``MULTI`` snapshot of epoch, counter and range. The
        blocking ``XREAD`` only waits for something to happen; its entries are discarded
        and the snapshot is taken again, so a reset during the wait cannot leak entries
        of a new epoch to a reader of the old one. Long waits are split into slices that
        fit the socket timeout, with a fresh snapshot after each.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        if after.offset < 0:  # not even a valid stream id
            raise HistoryLost(after, await self.position(topic))
        client = self._async_client()
        log = self.keys(topic)[0]
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            entries = await self._snapshot(client.redis, topic, after, limit)
            if entries:
                return entries
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is None or remaining <= 0:
                return []
            # BLOCK 0 would mean forever, so wait at least one millisecond.
            block = max(1, int(min(remaining, client.block) * 1000))
            await client.redis.xread({log: f"{after.offset}-0"}, count=1, block=block)

    async def _snapshot(
        self, client: redis.asyncio.Redis, topic: str, after: Position, limit: int
    ) -> list[Entry]:
        """Entries after ``after`` from one atomic look at the topic, or :exc:`HistoryLost`."""
        log, seq_key, epoch_key = self.keys(topic)
        async with client.pipeline(transaction=True) as pipe:
            pipe.get(epoch_key)
            pipe.get(seq_key)
            pipe.xrange(log, min=f"{after.offset + 1}-0", count=limit)
            epoch, seq, rows = await pipe.execute()
        if epoch is None or seq is None:
            raise HistoryLost(after, await self.position(topic))
        current = Position(_text(epoch), int(seq))
        entries = [Entry(int(_text(entry_id).split("-")[0]), row[b"d"]) for entry_id, row in rows]
        if after.epoch != current.epoch or after.offset > current.offset:
            raise HistoryLost(after, current)
        # Trimming only removes the oldest entries, so the first one proves the whole range.
        if after.offset < current.offset and (not entries or entries[0].offset != after.offset + 1):
            raise HistoryLost(after, current)
        return entries

    async def aclose(self) -> None:
        """Close the client of the running loop (other loops must close their own)."""
        with self._lock:
            found = self._async.pop(asyncio.get_running_loop(), None)
        if found is not None:
            await found.redis.aclose()

    def close(self) -> None:
        with self._lock:
            found, self._sync = self._sync, None
        if found is not None:
            found.redis.close()
