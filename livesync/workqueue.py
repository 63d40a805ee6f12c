"""Queue mode's shared pieces: Redis keys, the request and reply formats, the Lua scripts.

In queue mode (``livesync serve --writes queue``, setting ``writes="queue"``) a gateway
does not run client writes itself. It appends each one to one Redis stream per topic,
``{livesync:<topic>}:writes``, read by ``livesync worker`` processes through the consumer
group ``livesync-workers``. A worker answers on the originating gateway's private reply
stream, ``{livesync:<topic>}:replies:<gateway id>``. All keys share one hash tag, so a
worker can publish a reply and acknowledge the request in one ``MULTI`` (also on Redis
Cluster). See :mod:`livesync.worker` and :mod:`livesync.server.queue`.

Queue mode needs Redis: the in-process ``memory://`` broker cannot reach a worker in
another process, and :func:`require_redis` says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
import redis.asyncio
from redis.exceptions import ResponseError

from .brokers import RedisBroker
from .errors import LiveSyncError
from .protocol import Write, write_from_json, write_to_json
from .publications import Context

if TYPE_CHECKING:
    from .live import LiveSync

GROUP = "livesync-workers"
FORMAT = 1

# Longest single blocking read: redis-py gives sockets a read timeout (5 s by default in
# recent versions), and a blocking command that outlives it fails.
MAX_BLOCK = 2.0


class QueueModeError(LiveSyncError, ValueError):
    """Queue mode is misconfigured (for example without a Redis broker)."""


def require_redis(live: LiveSync) -> str:
    """The Redis URL queue mode uses (the broker's); raises :exc:`QueueModeError` without one."""
    if not isinstance(live.broker, RedisBroker):
        raise QueueModeError(
            "queue mode (writes='queue', `livesync serve --writes queue`, `livesync worker`) "
            "needs a Redis broker: set LIVESYNC_BROKER_URL=redis://host:6379/0. The write "
            f"queue is a Redis stream shared by gateways and workers; {live.broker.url!r} "
            "cannot reach another process."
        )
    return live.broker.url


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The Redis keys of one topic's write queue."""

    topic: str
    prefix: str = "livesync"

    @property
    def tag(self) -> str:
        return f"{{{self.prefix}:{self.topic}}}"

    @property
    def stream(self) -> str:
        """The requests, read by the workers' consumer group."""
        return f"{self.tag}:writes"

    def replies(self, gateway: str) -> str:
        """One gateway's private reply stream."""
        return f"{self.tag}:replies:{gateway}"


@dataclass(frozen=True, slots=True)
class Request:
    """One queued write: everything a worker needs to run it as the gateway would.

    ``changeset`` is the id the gateway picked for the write's change set (its fence waits
    for it); it also names the request in the reply. ``identity`` and ``extra`` travel
    as JSON, so in queue mode an identity must survive a JSON round trip unchanged
    (dicts with string keys, lists, strings, numbers, booleans, None).
    """

    gateway: str
    client: str
    session: str
    identity: Any
    changeset: str
    message: Write
    extra: dict[str, Any] = field(default_factory=dict)
    sent_at: float = 0.0

    @property
    def context(self) -> Context:
        return Context(self.identity, self.session, self.extra)

    def encode(self) -> bytes:
        """The stream entry's payload; raises :exc:`TypeError` for an identity (or extra)
        that JSON would not give back unchanged."""
        for name, value in (("identity", self.identity), ("extra", self.extra)):
            try:
                same = orjson.loads(orjson.dumps(value)) == value
            except TypeError:
                same = False
            if not same:
                raise TypeError(
                    f"the connection's {name} {value!r} does not survive JSON unchanged; "
                    "queue mode sends it to a worker as JSON (use dicts with string keys, "
                    "lists, strings, numbers, booleans or None)"
                )
        return orjson.dumps(
            {
                "f": FORMAT,
                "gw": self.gateway,
                "client": self.client,
                "session": self.session,
                "identity": self.identity,
                "extra": self.extra,
                "cs": self.changeset,
                "msg": write_to_json(self.message),
                "ts": self.sent_at or time.time(),
            }
        )

    @classmethod
    def decode(cls, payload: bytes) -> Request:
        """Parse :meth:`encode`'s output; raises ``ValueError`` (pydantic's
        ``ValidationError`` included), ``KeyError`` or ``TypeError`` if it is not one."""
        data = orjson.loads(payload)
        if data.get("f") != FORMAT:
            raise ValueError(f"unknown request format {data.get('f')!r}")
        return cls(
            gateway=str(data["gw"]),
            client=str(data["client"]),
            session=str(data["session"]),
            identity=data["identity"],
            changeset=str(data["cs"]),
            message=write_from_json(data["msg"]),
            extra=dict(data.get("extra") or {}),
            sent_at=float(data.get("ts", 0.0)),
        )


@dataclass(frozen=True, slots=True)
class Reply:
    """A worker's answer: the ack's fields and what the gateway needs for the fence.

    ``changed``: a change set with the request's id was (or, for a request claimed after
    a crash and answered from its stored ack, may have been) committed, so the fence
    waits for it.
    """

    changeset: str
    ack: dict[str, Any]
    changed: bool = False
    replayed: bool = False

    def encode(self) -> bytes:
        return orjson.dumps(
            {"cs": self.changeset, "ack": self.ack, "changed": self.changed, "re": self.replayed}
        )

    @classmethod
    def decode(cls, payload: bytes) -> Reply:
        data = orjson.loads(payload)
        return cls(str(data["cs"]), dict(data["ack"]), bool(data["changed"]), bool(data["re"]))


# Take a request back before any worker took it. KEYS[1]: the stream. ARGV: group, entry id.
# Returns 1: withdrawn (no worker can ever read it now); 0: a worker holds it (pending);
# -1: gone (answered already, or Redis lost it).
WITHDRAW = """
local ok, pending = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if ok and #pending > 0 then
  return 0
end
if redis.call('XDEL', KEYS[1], ARGV[2]) == 1 then
  return 1
end
return -1
"""
WITHDRAWN, TAKEN, GONE = 1, 0, -1

# A worker's heartbeat on a request it is running: reset its idle time, so nobody claims
# it, but only if this worker still holds it. KEYS[1]: stream. ARGV: group, consumer, id.
HEARTBEAT = """
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #pending == 1 and pending[1][2] == ARGV[2] then
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
  return 1
end
return 0
"""


async def ensure_group(client: redis.asyncio.Redis, stream: str) -> None:
    """Create the stream and the workers' group (reading from the start) unless they exist."""
    try:
        await client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def block_ms(client: redis.asyncio.Redis, wanted: float) -> int:
    """Milliseconds a blocking read may last on ``client`` (at least 1: 0 means forever)."""
    socket_timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
    longest = MAX_BLOCK if socket_timeout is None else min(MAX_BLOCK, socket_timeout / 2)
    return max(1, int(min(wanted, longest) * 1000))


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
