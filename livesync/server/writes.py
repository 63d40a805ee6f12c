"""One connection's client writes: run in arrival order, each answered by ``ack`` then ``fence``.

Writes of one connection run one at a time, in the order they arrived, so a client can
send an insert and an update of the same document back to back. Each runs in a worker
thread (:meth:`LiveSync.execute`: one transaction), or, in queue mode, in a ``livesync
worker`` process (:mod:`livesync.server.queue`); the connection's other messages
(subscriptions, pings) are served meanwhile.

For an accepted write the gateway sends ``ack`` and then, once every change the write
caused has been sent to this connection, ``fence``:

1. before the write runs, the hub is told to expect its change set id (``Hub.expect``);
2. after the ack, a fence task waits for the hub to fan that change set out, for the
   requeries it triggered on this connection's keys, and for this connection's starting
   subscriptions (``Hub.settle``), then sends ``fence``. The next write does not wait for
   it.

A write that changed nothing, and a resent write answered from its stored ack, get their
fence as soon as the connection's subscriptions are settled. (In queue mode, a request a
worker ran again after another worker died is answered from its stored ack too, but its
first attempt committed a change set with the same id, so its fence waits for it.) If
the change set is not delivered within ``write_fence_timeout`` (a broker outage longer
than that), the fence is sent anyway and a warning logged: the changes still arrive
through the subscriptions, as every change does. A rejected write gets no fence.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ..dispatch import Outcome, internal
from ..protocol import ErrorCode, Write, encode, rejected
from ..publications import Context
from .hub import Frame, Hub, Outlet

if TYPE_CHECKING:
    from ..live import LiveSync

log = logging.getLogger("livesync.gateway")

Executor = Callable[[Context, Write, str, str], Awaitable[Outcome]]
"""Runs one write: ``(ctx, message, client, changeset_id) -> Outcome``. Inline mode runs
it in a worker thread of this process; queue mode hands it to ``livesync worker``
processes (:class:`~livesync.server.queue.WriteQueue`)."""


def inline(live: LiveSync) -> Executor:
    """The inline executor: :meth:`LiveSync.execute` in a thread of the default pool."""

    async def execute(ctx: Context, message: Write, client: str, changeset_id: str) -> Outcome:
        return await asyncio.to_thread(
            live.execute, ctx, message, client=client, changeset_id=changeset_id
        )

    return execute


class ConnectionWrites:
    """The write queue of one connection (see the module docstring)."""

    def __init__(
        self,
        live: LiveSync,
        hub: Hub,
        outlet: Outlet,
        ctx: Context,
        client: str,
        send: Callable[[Frame], None],
        execute: Executor | None = None,
    ) -> None:
        self.live = live
        self.execute = execute or inline(live)
        self.hub = hub
        self.outlet = outlet
        self.ctx = ctx
        self.client = client
        self.send = send
        self.limit = live.settings.write_rate_burst
        self.fence_timeout = live.settings.write_fence_timeout
        self._queue: collections.deque[Write] = collections.deque()
        self._runner: asyncio.Task[None] | None = None

    def submit(self, message: Write) -> None:
        """Queue a write (never blocks); refuse it as ``rate-limited`` if too many wait."""
        if len(self._queue) >= self.limit:
            self.send(rejected(message.id, ErrorCode.RATE_LIMITED, "too many writes waiting").data)
            return
        self._queue.append(message)
        if self._runner is None or self._runner.done():
            self._runner = self._spawn(self._run())

    async def _run(self) -> None:
        while self._queue:
            await self._process(self._queue.popleft())

    async def _process(self, message: Write) -> None:
        changeset_id = uuid.uuid4().hex
        waiter = self.hub.expect(changeset_id)
        try:
            outcome = await self.execute(self.ctx, message, self.client, changeset_id)
        except asyncio.CancelledError:
            self.hub.forget(changeset_id)
            raise
        except Exception:
            log.exception(
                "write %s failed (session %s, client %s)", message.id, self.ctx.session, self.client
            )
            outcome = Outcome(internal(message.id))
        if not outcome.changed:
            self.hub.forget(changeset_id)
        self.send(encode("ack", **outcome.ack).data)
        if outcome.ok:
            self._spawn(self._fence(message.id, changeset_id, waiter if outcome.changed else None))

    async def _fence(
        self, request: str, changeset_id: str, waiter: asyncio.Future[frozenset[str]] | None
    ) -> None:
        try:
            async with asyncio.timeout(self.fence_timeout):
                dirty = frozenset() if waiter is None else await waiter
                await self.hub.settle(self.outlet, dirty)
        except TimeoutError:
            log.warning(
                "write %s (session %s): its change set %s was not delivered within %.1fs; "
                "sending the fence anyway",
                request,
                self.ctx.session,
                changeset_id,
                self.fence_timeout,
            )
        finally:
            self.hub.forget(changeset_id)
        self.send(encode("fence", id=request).data)

    def _spawn(
        self, coroutine: collections.abc.Coroutine[object, object, None]
    ) -> asyncio.Task[None]:
        """A task owned by the connection: cancelled when it closes."""
        task = asyncio.create_task(coroutine)
        self.outlet.tasks.add(task)
        task.add_done_callback(self.outlet.tasks.discard)
        return task
