"""``livesync worker``: runs queued client writes and method calls (queue mode, Redis only).

A worker reads the write queue (:mod:`livesync.workqueue`) in the consumer group
``livesync-workers``, runs each request exactly as a gateway in inline mode would
(:meth:`LiveSync.execute`: one transaction, the stored ack, the change set id the gateway
chose), and answers on the originating gateway's reply stream. The contract:

* **Nothing is dropped.** A request stays pending in the group until its answer is
  published: the reply ``XADD``, the ``XACK`` and the ``XDEL`` of the request run in one
  ``MULTI``. A worker that dies (``SIGKILL``, a crash, a lost host) leaves its requests
  pending; every worker claims requests idle for longer than ``worker_claim_idle``
  (``XAUTOCLAIM``) and runs them. While a request runs, its worker resets its idle time
  every third of that (a heartbeat), so a slow method is not claimed by another worker.
* **Exactly once.** A request run twice (claimed after a crash that came after its
  COMMIT) is answered from its stored ack in ``livesync_requests`` (written in the write's
  own transaction, :mod:`livesync.idempotency`) and applied once. A rejected request is
  simply evaluated again: a rejection leaves nothing behind.
* **Graceful stop.** :meth:`Worker.stop` (``SIGTERM``/``SIGINT`` in the command) stops
  reading, lets the running requests finish and answer, then leaves the group.
* **Poison.** A request delivered ``worker_max_deliveries`` times (every worker that ran
  it died) is answered ``internal`` and dropped, with an error in the log.

Requests run in threads, up to ``worker_concurrency`` at once. A connection's writes
still run one at a time in order: its gateway sends the next only after the previous ack.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import redis.asyncio
from redis.exceptions import RedisError, ResponseError

from .dispatch import internal
from .workqueue import (
    GROUP,
    HEARTBEAT,
    QueueKeys,
    Reply,
    Request,
    block_ms,
    ensure_group,
    require_redis,
    text,
)

if TYPE_CHECKING:
    from .live import LiveSync

log = logging.getLogger("livesync.worker")

REPLY_MAXLEN = 10_000  # replies a gateway's stream keeps (it reads them at once)
REPLY_TTL = 3600  # seconds a reply stream outlives its last reply (a dead gateway's)
IDLE_CONSUMER = 3600.0  # seconds after which an empty consumer (a dead worker) is removed
ANSWER_PATIENCE = 30.0  # seconds a worker keeps retrying to publish an answer


class Worker:
    """One worker process's loop; ``await run()`` until :meth:`stop` (see the module doc).

    ``concurrency``, ``claim_idle`` and ``max_deliveries`` default to the settings
    ``worker_concurrency``, ``worker_claim_idle`` and ``worker_max_deliveries``.
    """

    def __init__(
        self,
        live: LiveSync,
        *,
        name: str | None = None,
        concurrency: int | None = None,
        claim_idle: float | None = None,
        max_deliveries: int | None = None,
        poll: float = 1.0,
    ) -> None:
        settings = live.settings
        self.live = live
        self.url = require_redis(live)
        self.keys = QueueKeys(settings.topic)
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.concurrency = concurrency or settings.worker_concurrency
        self.claim_idle = claim_idle or settings.worker_claim_idle
        self.max_deliveries = max_deliveries or settings.worker_max_deliveries
        self.poll = poll
        self.started = asyncio.Event()  # set once the group exists and reading begins
        self.processed = 0
        self.claimed = 0
        self._stop = asyncio.Event()
        self._active: set[str] = set()  # entry ids running here
        self._cursor = "0-0"  # where the next XAUTOCLAIM scan of the pending list starts
        self._threads: ThreadPoolExecutor | None = None  # requests run here (run() makes it)

    def stop(self) -> None:
        """Stop reading; :meth:`run` returns once the running requests are answered."""
        self._stop.set()

    async def run(self) -> None:
        """Process requests until :meth:`stop`; see the module docstring."""
        client = redis.asyncio.Redis.from_url(self.url)
        heartbeat = client.register_script(HEARTBEAT)
        stream = self.keys.stream
        running: set[asyncio.Task[None]] = set()
        self._threads = ThreadPoolExecutor(self.concurrency, thread_name_prefix="livesync-worker")
        try:
            await ensure_group(client, stream)
            await self._reap(client)
            self.started.set()
            next_claim = 0.0
            backoff = 0.1
            while not self._stop.is_set():
                free = self.concurrency - len(running)
                if free <= 0:
                    await asyncio.wait(running, timeout=self.poll, return_when="FIRST_COMPLETED")
                    continue
                try:
                    if time.monotonic() >= next_claim:
                        next_claim = time.monotonic() + min(self.claim_idle / 2, 5.0)
                        claimed = await self._claim(client, free)
                        self._start(running, client, heartbeat, claimed)
                        if claimed:
                            continue  # the slots left may be none
                    self._start(running, client, heartbeat, await self._read(client, free))
                    backoff = 0.1
                except (RedisError, OSError) as exc:
                    if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                        # Redis lost the stream (a restart without persistence): start over.
                        log.warning("the write queue's consumer group is gone; creating it")
                        with contextlib.suppress(RedisError, OSError):
                            await ensure_group(client, stream)
                        continue
                    log.warning("reading the write queue failed; retrying in %.1fs", backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
            if running:
                await asyncio.gather(*running, return_exceptions=True)
            await self._leave(client)
        finally:
            for task in running:
                task.cancel()
            await client.aclose()
            self._threads.shutdown(wait=False)  # idle after a graceful stop

    def _start(
        self,
        running: set[asyncio.Task[None]],
        client: redis.asyncio.Redis,
        heartbeat: Any,
        batch: list[tuple[str, dict[bytes, bytes], bool]],
    ) -> None:
        for entry_id, fields, redelivered in batch:
            if entry_id in self._active:  # claimed back from ourselves: already running
                continue
            self._active.add(entry_id)
            task = asyncio.create_task(
                self._process(client, heartbeat, entry_id, fields, redelivered)
            )
            running.add(task)
            task.add_done_callback(running.discard)
            task.add_done_callback(functools.partial(_forget, self._active, entry_id))

    # ------------------------------------------------------------------ reading
    async def _read(
        self, client: redis.asyncio.Redis, count: int
    ) -> list[tuple[str, dict[bytes, bytes], bool]]:
        reply: Any = await client.xreadgroup(
            GROUP,
            self.name,
            {self.keys.stream: ">"},
            count=count,
            block=block_ms(client, self.poll),
        )
        return [
            (text(entry_id), fields, False)
            for _stream, entries in reply or ()
            for entry_id, fields in entries
            if fields is not None
        ]

    async def _claim(
        self, client: redis.asyncio.Redis, count: int
    ) -> list[tuple[str, dict[bytes, bytes], bool]]:
        """Take over requests whose worker stopped beating (it died, presumably)."""
        reply: Any = await client.xautoclaim(
            self.keys.stream,
            GROUP,
            self.name,
            min_idle_time=int(self.claim_idle * 1000),
            start_id=self._cursor,
            count=count,
        )
        # Go on from where this scan stopped next time ("0-0" once it went round).
        self._cursor = text(reply[0]) if reply else "0-0"
        entries = reply[1] if reply else []
        claimed = [(text(entry_id), fields, True) for entry_id, fields in entries if fields]
        if claimed:
            self.claimed += len(claimed)
            log.warning(
                "worker %s claimed %d request(s) left by a worker that stopped: %s",
                self.name,
                len(claimed),
                ", ".join(entry_id for entry_id, _, _ in claimed),
            )
        return claimed

    # ------------------------------------------------------------------ one request
    async def _process(
        self,
        client: redis.asyncio.Redis,
        heartbeat: Any,
        entry_id: str,
        fields: dict[bytes, bytes],
        redelivered: bool,
    ) -> None:
        try:
            await self._run_one(client, heartbeat, entry_id, fields, redelivered)
        except Exception:  # Redis failed on the way: the request stays pending, and is claimed
            log.exception("request %s failed in worker %s; it will be claimed", entry_id, self.name)

    async def _run_one(
        self,
        client: redis.asyncio.Redis,
        heartbeat: Any,
        entry_id: str,
        fields: dict[bytes, bytes],
        redelivered: bool,
    ) -> None:
        try:
            request = Request.decode(fields[b"d"])
        except Exception:
            log.error("dropping write request %s: not a request (%r)", entry_id, fields)
            await self._answer(client, entry_id, None)
            return
        if redelivered and await self._deliveries(client, entry_id) > self.max_deliveries:
            log.error(
                "request %s of client %s (entry %s) was delivered more than %d times, and "
                "every worker running it stopped; answering internal and dropping it",
                request.message.id,
                request.client,
                entry_id,
                self.max_deliveries,
            )
            ack = internal(request.message.id)
            await self._answer(client, entry_id, request, Reply(request.changeset, ack))
            return
        beating = asyncio.create_task(self._beat(heartbeat, entry_id))
        try:
            outcome = await asyncio.get_running_loop().run_in_executor(
                self._threads,
                functools.partial(
                    self.live.execute,
                    request.context,
                    request.message,
                    client=request.client,
                    changeset_id=request.changeset,
                ),
            )
        finally:
            beating.cancel()
        # Answered from the stored ack after a crash: the first attempt committed, with the
        # same change set id, which may not have been fanned out yet; the fence waits for it.
        changed = outcome.changed or (redelivered and outcome.replayed)
        reply = Reply(request.changeset, outcome.ack, changed=changed, replayed=outcome.replayed)
        await self._answer(client, entry_id, request, reply)
        self.processed += 1

    async def _beat(self, heartbeat: Any, entry_id: str) -> None:
        """Keep a running request from looking abandoned."""
        while True:
            await asyncio.sleep(self.claim_idle / 3)
            try:
                held = await heartbeat(keys=[self.keys.stream], args=[GROUP, self.name, entry_id])
            except (RedisError, OSError):
                log.warning("heartbeat of request %s failed", entry_id)
                continue
            if not held:
                log.warning(
                    "request %s was claimed by another worker while this one ran it; "
                    "it is applied once all the same (the stored ack decides)",
                    entry_id,
                )
                return

    async def _deliveries(self, client: redis.asyncio.Redis, entry_id: str) -> int:
        found = await client.xpending_range(
            self.keys.stream, GROUP, min=entry_id, max=entry_id, count=1
        )
        return int(found[0]["times_delivered"]) if found else 0

    async def _answer(
        self,
        client: redis.asyncio.Redis,
        entry_id: str,
        request: Request | None,
        reply: Reply | None = None,
    ) -> None:
        """Publish the reply, then (same MULTI) acknowledge and delete the request.

        If Redis stays unreachable the request is left pending: another worker claims it
        later and answers it from the stored ack (or evaluates a rejected one again).
        """
        stream = self.keys.stream
        deadline = time.monotonic() + ANSWER_PATIENCE
        backoff = 0.1
        while True:
            try:
                async with client.pipeline(transaction=True) as pipe:
                    if request is not None and reply is not None:
                        replies = self.keys.replies(request.gateway)
                        pipe.xadd(
                            replies, {"d": reply.encode()}, maxlen=REPLY_MAXLEN, approximate=True
                        )
                        pipe.expire(replies, REPLY_TTL)
                    pipe.xack(stream, GROUP, entry_id)
                    pipe.xdel(stream, entry_id)
                    await pipe.execute()
                return
            except (RedisError, OSError):
                if time.monotonic() > deadline:
                    log.error("could not answer request %s; leaving it to be claimed", entry_id)
                    return
                log.warning("answering request %s failed; retrying", entry_id)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    # ------------------------------------------------------------------ membership
    async def _reap(self, client: redis.asyncio.Redis) -> None:
        """Remove consumers of long-dead workers (nothing pending, idle for an hour)."""
        with contextlib.suppress(RedisError):
            for consumer in await client.xinfo_consumers(self.keys.stream, GROUP):
                name = text(consumer["name"])
                idle = float(consumer["idle"]) / 1000
                if name != self.name and consumer["pending"] == 0 and idle > IDLE_CONSUMER:
                    await client.xgroup_delconsumer(self.keys.stream, GROUP, name)

    async def _leave(self, client: redis.asyncio.Redis) -> None:
        """Leave the group on a graceful stop, unless requests are still pending here."""
        with contextlib.suppress(RedisError):
            for consumer in await client.xinfo_consumers(self.keys.stream, GROUP):
                if text(consumer["name"]) == self.name and consumer["pending"] == 0:
                    await client.xgroup_delconsumer(self.keys.stream, GROUP, self.name)


def _forget(active: set[str], entry_id: str, task: asyncio.Task[None]) -> None:
    active.discard(entry_id)
