"""The gateway's side of queue mode: put a write on the Redis stream, await its worker's reply.

One :class:`WriteQueue` per gateway process. :meth:`WriteQueue.execute` has the shape of
an inline write (:meth:`LiveSync.execute` in a thread), so
:class:`~livesync.server.writes.ConnectionWrites` (acks, fences, order) is the same in
both modes. The request carries the change set id the gateway picked (the hub waits for
it, as in inline mode) and this gateway's id, which names its private reply stream; one
reader task per gateway follows that stream and resolves the waiting requests.

**Timeout.** A request no worker has taken within ``write_queue_timeout`` is withdrawn:
one Lua script deletes it from the stream unless the group has delivered it, so once
withdrawn no worker can ever run it. It is answered ``ack {ok: false, code: "internal"}``
and, like every rejection, left nothing behind. A request a worker has taken is waited
for, however long it runs: a worker that died is replaced by one that claims the request
(:mod:`livesync.worker`). If Redis lost a request (it is neither queued nor pending, and
no answer came within one more timeout), the answer is ``internal`` too; then the outcome
is unknown, and a resend of the same request id tells (it is applied at most once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import TYPE_CHECKING, Any

import redis.asyncio
from redis.exceptions import RedisError

from ..dispatch import Outcome, internal
from ..protocol import ErrorCode, Write
from ..publications import Context
from ..workqueue import (
    GONE,
    GROUP,
    WITHDRAW,
    WITHDRAWN,
    QueueKeys,
    Reply,
    Request,
    block_ms,
    ensure_group,
    require_redis,
    text,
)

if TYPE_CHECKING:
    from ..live import LiveSync

log = logging.getLogger("livesync.gateway")


def not_taken(request: str) -> dict[str, Any]:
    """The ack of a withdrawn request: nothing ran."""
    return {
        "id": request,
        "ok": False,
        "code": ErrorCode.INTERNAL.value,
        "message": "no write worker took the request in time; it was not run",
    }


class WriteQueue:
    """Submits this gateway's writes to the workers (see the module docstring)."""

    def __init__(
        self, live: LiveSync, *, gateway: str | None = None, timeout: float | None = None
    ) -> None:
        self.url = require_redis(live)
        self.keys = QueueKeys(live.settings.topic)
        self.gateway = gateway or uuid.uuid4().hex[:16]
        self.timeout = timeout or live.settings.write_queue_timeout
        self.withdrawn = 0
        self._pending: dict[str, asyncio.Future[Reply]] = {}
        self._client: redis.asyncio.Redis | None = None
        self._withdraw: Any = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        """Requests sent and not answered yet."""
        return len(self._pending)

    async def start(self) -> None:
        self._client = redis.asyncio.Redis.from_url(self.url)
        self._withdraw = self._client.register_script(WITHDRAW)
        # The group exists before any worker runs, so a withdrawal can tell taken requests.
        await ensure_group(self._client, self.keys.stream)
        self._reader = asyncio.create_task(self._read_replies(), name="livesync-replies")

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        for future in self._pending.values():
            future.cancel()
        if self._client is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._client.delete(self.keys.replies(self.gateway))
            await self._client.aclose()
            self._client = None

    async def execute(
        self, ctx: Context, message: Write, client: str, changeset_id: str
    ) -> Outcome:
        """Queue one write and return its outcome (never raises for a Redis failure)."""
        assert self._client is not None, "WriteQueue.start() was not awaited"
        try:
            payload = Request(
                gateway=self.gateway,
                client=client,
                session=ctx.session,
                identity=ctx.identity,
                changeset=changeset_id,
                message=message,
                extra=dict(ctx.extra),
            ).encode()
        except TypeError as exc:
            log.error("write %s (session %s) cannot be queued: %s", message.id, ctx.session, exc)
            return Outcome(internal(message.id))
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[changeset_id] = future
        try:
            try:
                entry_id = text(await self._client.xadd(self.keys.stream, {"d": payload}))
            except (RedisError, OSError):
                log.warning("write %s: the write queue is unreachable", message.id, exc_info=True)
                return Outcome(internal(message.id))
            return await self._wait(message, entry_id, future)
        finally:
            self._pending.pop(changeset_id, None)

    async def _wait(self, message: Write, entry_id: str, future: asyncio.Future[Reply]) -> Outcome:
        gone = False
        while True:
            try:
                reply = await asyncio.wait_for(asyncio.shield(future), self.timeout)
            except TimeoutError:
                pass
            else:
                return Outcome(reply.ack, changed=reply.changed, replayed=reply.replayed)
            if gone:
                log.error(
                    "write %s (entry %s) was neither queued nor answered; answering internal",
                    message.id,
                    entry_id,
                )
                return Outcome(internal(message.id))
            try:
                status = await self._withdraw(keys=[self.keys.stream], args=[GROUP, entry_id])
            except (RedisError, OSError):
                log.warning("write %s: could not check the queue; waiting on", message.id)
                continue
            if status == WITHDRAWN:
                self.withdrawn += 1
                log.warning(
                    "write %s: no worker took it within %.1fs; withdrawn (is `livesync worker` "
                    "running?)",
                    message.id,
                    self.timeout,
                )
                return Outcome(not_taken(message.id))
            gone = status == GONE  # answered meanwhile (the reply is on its way), or lost

    async def _read_replies(self) -> None:
        assert self._client is not None
        key = self.keys.replies(self.gateway)
        last = "0-0"
        backoff = 0.1
        while True:
            try:
                found: Any = await self._client.xread(
                    {key: last}, count=500, block=block_ms(self._client, 2.0)
                )
                backoff = 0.1
            except (RedisError, OSError):
                log.warning("reading write replies failed; retrying in %.1fs", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            for _stream, entries in found or ():
                for entry_id, fields in entries:
                    last = text(entry_id)
                    try:
                        reply = Reply.decode(fields[b"d"])
                    except Exception:
                        log.error("skipping an undecodable write reply %s", last)
                        continue
                    future = self._pending.get(reply.changeset)
                    if future is not None and not future.done():
                        future.set_result(reply)
