"""The hub: follows the change log, keeps the channels, fans change sets out to connections.

One hub per gateway process. It reads the broker topic from where it started (its
position), routes each change set through the :class:`~livesync.server.router.Router`,
encodes each channel's part once, and hands every subscribed connection one ``tx`` frame
built by joining the parts it needs. Connections only ever receive bytes through
:meth:`Outlet.send` and :meth:`Outlet.write`, which never block. Change sets read
together are written together: one write per connection per batch
(:mod:`livesync.server.fanout`).

**No gap at subscribe.** A subscriber is registered on its channel *before* its snapshot
is read, and frames for that channel are buffered for it until ``ready`` is sent. Anything
the hub processed before the registration was committed before the snapshot read began
(publishing happens after COMMIT), so it is in the snapshot; anything after it is in the
buffer. Changes in both are harmless: the client drops them by version.

**Fences.** A client write's change set has an id chosen before its transaction commits.
The gateway registers it with :meth:`Hub.expect` first; :meth:`Hub.deliver` resolves the
waiter *after* fanning the change set out, with the keys it left to a requery.
:meth:`Hub.settle` then waits, for one connection, until those requeries ran and none of
its subscriptions is still starting (frames held for a starting subscription go out with
its ``ready``). Only then has every change the write caused been sent to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..brokers import HistoryLost, Position
from ..changes import ChangeSet
from ..matching import NotCompilable, compile_predicate
from ..ordering import compile_order, wire_order
from ..protocol import Limits, encode
from ..publications import Query
from .fanout import Batch, Plan, plan
from .frames import framed
from .router import Channel, Router, Row, WireChanges, encode_part, replay, tx_frame
from .window import Window

if TYPE_CHECKING:
    from ..live import LiveSync

log = logging.getLogger("livesync.hub")


Frame = bytes | str  # UTF-8 JSON; shared tx frames are one bytes object for all recipients


BATCH_LIMIT = 64  # change sets routed before their frames are written and the hub yields


@dataclass(eq=False, slots=True)
class Outlet:
    """The hub's view of one connection: non-blocking writes and its subscriptions.

    ``send`` writes one message (a payload); ``write`` writes bytes that are already
    whole websocket frames (a batch's, :mod:`livesync.server.fanout`).
    """

    send: Callable[[Frame], None]
    write: Callable[[bytes], None]
    ended: Callable[[str], None] = lambda sub_id: None  # the server ended a subscription
    subs: dict[str, str] = field(default_factory=dict)  # client sub id -> channel key
    starting: set[str] = field(default_factory=set)  # keys whose subscription is starting
    held: list[Frame] = field(default_factory=list)  # tx frames held while any is starting
    tasks: set[asyncio.Task[None]] = field(default_factory=set)  # subscriptions, writes
    unbuffered: list[asyncio.Future[None]] = field(default_factory=list)  # see stop_buffering

    @property
    def buffering(self) -> bool:
        """True while a subscription is starting: tx frames wait (see :meth:`hold`)."""
        return bool(self.starting)

    def hold(self, keys: list[str], frame: Frame) -> bool:
        """Keep ``frame`` back if it concerns a starting key, or if an earlier frame was
        kept back (frames never overtake each other: a client resumes each subscription
        from the last position it applied). Returns whether it was held."""
        if self.held or any(key in self.starting for key in keys):
            self.held.append(frame)
            return True
        return False

    def stop_buffering(self, key: str) -> list[Frame]:
        """``key`` has started (its ``ready`` is sent) or was given up. Returns the held
        frames to send now: all of them once no subscription is starting any more, else
        none (a held frame may carry a part for a key still starting). When nothing is
        starting, wakes whoever waits for that (:meth:`Hub.settle`)."""
        self.starting.discard(key)
        if self.starting:
            return []
        held, self.held = self.held, []
        if self.unbuffered:
            waiting, self.unbuffered = self.unbuffered, []
            for future in waiting:
                if not future.done():
                    future.set_result(None)
        return held


@dataclass
class HubStats:
    change_sets: int = 0
    frames_out: int = 0
    bytes_out: int = 0
    lag_seconds: float = 0.0
    resets: int = 0


class Hub:
    """See the module docstring. Create with a :class:`LiveSync`, then ``await start()``."""

    def __init__(
        self, live: LiveSync, *, limits: Limits | None = None, requery_delay: float = 0.05
    ) -> None:
        self.live = live
        self.limits = limits or Limits()
        self.router = Router()
        self.subscribers: dict[str, set[Outlet]] = {}
        self.position = Position("", 0)
        self.stats = HubStats()
        self.requery_delay = requery_delay
        self._task: asyncio.Task[None] | None = None
        self._requery_tasks: dict[str, asyncio.Task[None]] = {}
        self._requery_again: set[str] = set()  # changed while its requery was reading
        self._fences: dict[str, asyncio.Future[frozenset[str]]] = {}  # change set id -> waiter
        self._plans: dict[str, Plan] = {}  # key -> its subscribers by kind; cleared on change
        self.connected = False

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self.position = await self.live.broker.position(self.live.settings.topic)
        self.connected = True
        self._task = asyncio.create_task(self._consume(), name="livesync-hub")

    async def stop(self) -> None:
        for task in [self._task, *self._requery_tasks.values()]:
            if task is not None:
                task.cancel()
        for task in [self._task, *self._requery_tasks.values()]:
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._task = None

    async def _consume(self) -> None:
        broker, topic = self.live.broker, self.live.settings.topic
        backoff = 0.1
        while True:
            try:
                entries = await broker.read(topic, self.position, limit=500, timeout=1.0)
                self.connected = True
                backoff = 0.1
            except HistoryLost as lost:
                log.warning("change log history lost (%s); resetting every channel", lost)
                self.position = lost.current
                self._reset_all("history-lost")
                self._release_fences()  # lost change sets will never be delivered
                continue
            except asyncio.CancelledError:
                raise
            except Exception:
                # The broker is unreachable: keep the position, retry; nothing is lost.
                self.connected = False
                log.warning("broker read failed; retrying in %.1fs", backoff, exc_info=True)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            for start in range(0, len(entries), BATCH_LIMIT):
                self._deliver_batch(entries[start : start + BATCH_LIMIT])
                # Let the loop breathe between batches (pings, new connections, writes).
                await asyncio.sleep(0)

    def _deliver_batch(self, entries: list[Any]) -> None:
        """Route consecutive log entries, then write each connection its frames once, then
        resolve the fences of the change sets (their frames are out)."""
        batch = Batch()
        settled: list[tuple[str, frozenset[str]]] = []
        for entry in entries:
            try:
                changeset = ChangeSet.decode(entry.payload)
            except ValueError:
                log.error("skipping undecodable change log entry %d", entry.offset)
            else:
                try:
                    settled.append(self._route(entry.offset, changeset, batch))
                except Exception:
                    # A bug must not stop the hub: every channel restarts from a fresh
                    # snapshot, which is always correct.
                    log.exception("delivering change set %d failed", entry.offset)
                    self._flush(batch)
                    self._reset_all("internal")
                    settled.append((changeset.id, frozenset()))
            self.position = Position(self.position.epoch, entry.offset)
        self._flush(batch)
        for changeset_id, dirty in settled:
            self._resolve(changeset_id, dirty)

    # ------------------------------------------------------------------ fan-out
    def deliver(self, pos: int, changeset: ChangeSet) -> None:
        """Route one change set and send each connection its frame (synchronous: no awaits)."""
        batch = Batch()
        changeset_id, dirty = self._route(pos, changeset, batch)
        self._flush(batch)
        self._resolve(changeset_id, dirty)

    def _route(self, pos: int, changeset: ChangeSet, batch: Batch) -> tuple[str, frozenset[str]]:
        """Route one change set into ``batch``; returns its id and the keys it made dirty."""
        self.stats.change_sets += 1
        self.stats.lag_seconds = max(0.0, time.time() - changeset.ts)
        for change in changeset.changes:
            if change.op == "reset":
                self._flush(batch)  # reset frames must not overtake earlier tx frames
                self._reset_collection(change.collection, "resync")
        routed, dirty = self.router.route(pos, changeset)
        self._fan_out(pos, routed, batch)
        for key in dirty:
            self._schedule_requery(key)
        return changeset.id, frozenset(dirty)

    # ------------------------------------------------------------------ fences
    def expect(self, changeset_id: str) -> asyncio.Future[frozenset[str]]:
        """A future resolved once the change set ``changeset_id`` has been fanned out.

        Register it before the change set can be published (before its COMMIT). Its
        result is the keys the change set made dirty (their requeries are still to run).
        Drop it with :meth:`forget` if the write fails or its connection closes.
        """
        waiter: asyncio.Future[frozenset[str]] = asyncio.get_running_loop().create_future()
        self._fences[changeset_id] = waiter
        return waiter

    def forget(self, changeset_id: str) -> None:
        """Drop a waiter from :meth:`expect` (no-op if already resolved)."""
        waiter = self._fences.pop(changeset_id, None)
        if waiter is not None and not waiter.done():
            waiter.cancel()

    def _resolve(self, changeset_id: str, dirty: frozenset[str]) -> None:
        waiter = self._fences.pop(changeset_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(dirty)

    def _release_fences(self) -> None:
        """History was lost: no waiter can be told apart; every subscription was reset."""
        fences, self._fences = self._fences, {}
        for waiter in fences.values():
            if not waiter.done():
                waiter.set_result(frozenset())

    async def settle(self, outlet: Outlet, dirty: frozenset[str] = frozenset()) -> None:
        """Wait until ``outlet`` has been sent everything a delivered change set caused:
        the requeries of the ``dirty`` keys it subscribes to have run, and none of its
        subscriptions is still starting (their held frames go out with ``ready``)."""
        mine = dirty & set(outlet.subs.values())
        tasks = [task for key in mine if (task := self._requery_tasks.get(key)) is not None]
        if tasks:
            await asyncio.wait(tasks)
        while outlet.buffering:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            outlet.unbuffered.append(waiter)
            await waiter

    def _fan_out(
        self, pos: int, routed: dict[str, WireChanges], batch: Batch | None = None
    ) -> None:
        """Add one change set's ``tx`` frames to ``batch`` (or write them now, without one).

        Per key, the frame is encoded once; a key's solo subscribers cost nothing here
        (they get the key's joined frames at the flush). Only connections with several
        keys or a starting subscription are handled one by one.
        """
        if not routed:
            return
        own = batch is None
        if batch is None:
            batch = Batch()
        parts = {key: encode_part(key, changes) for key, changes in routed.items()}
        stats = self.stats
        mixed: dict[Outlet, list[str]] = {}
        for key, part in parts.items():
            plan = self._plan(key)
            if plan.solo:
                frame = tx_frame(pos, [part])
                pending = batch.shared.get(key)
                if pending is not None and pending[0] is not plan.solo:
                    self._flush(batch)  # subscribers changed mid-batch: keep their order
                    pending = None
                if pending is None:
                    batch.shared[key] = (plan.solo, [framed(frame)])
                else:
                    pending[1].append(framed(frame))
                stats.frames_out += len(plan.solo)
                stats.bytes_out += len(frame) * len(plan.solo)
            for outlet in plan.mixed:
                mixed.setdefault(outlet, []).append(key)
        # One key's frame (and its websocket framing) is built once for all its outlets.
        single: dict[str, tuple[bytes, bytes]] = {}
        for outlet, keys in mixed.items():
            if len(keys) == 1:
                key = keys[0]
                found = single.get(key)
                if found is None:
                    payload = tx_frame(pos, [parts[key]])
                    found = single[key] = (payload, framed(payload))
                frame, wire = found
            else:
                frame, wire = tx_frame(pos, [parts[k] for k in keys]), None
            if outlet.buffering and outlet.hold(keys, frame):
                continue  # counted and sent when the starting subscription is ready
            stats.frames_out += 1
            stats.bytes_out += len(frame)
            batch.own.setdefault(outlet, []).append(wire or framed(frame))
        if own:
            self._flush(batch)

    def _plan(self, key: str) -> Plan:
        found = self._plans.get(key)
        if found is None:
            found = self._plans[key] = plan(self.subscribers.get(key, set()), key)
        return found

    def _flush(self, batch: Batch) -> None:
        """Write a batch: one write per connection; a broken one is dropped, and never
        stops the others' fan-out."""
        if not batch:
            return
        for outlets, data in batch.take():
            for outlet in outlets:
                try:
                    outlet.write(data)
                except Exception:
                    log.exception("sending to a connection failed; dropping it")
                    self.drop(outlet)

    # ------------------------------------------------------------------ subscriptions
    async def subscribe(
        self, outlet: Outlet, sub_id: str, query: Query, since: tuple[str, int] | None
    ) -> None:
        """Register, send the snapshot (or the missed changes) and ``ready``, then go live.

        A channel reset while the subscription is starting (an epoch change, a resync) is
        invisible to the client, which does not know the key yet: the subscription simply
        starts again, from a fresh snapshot.
        """
        key = query.key
        outlet.starting.add(key)
        self._plans.clear()
        try:
            while not await self._start(outlet, sub_id, query, since):
                if outlet.subs.get(sub_id) != key:
                    return  # unsubscribed while starting
                since = None
        except BaseException:
            self.unsubscribe(outlet, sub_id)
            raise
        finally:
            self._plans.clear()
            for frame in outlet.stop_buffering(key):
                self._deliver_frame(outlet, frame)

    async def _start(
        self, outlet: Outlet, sub_id: str, query: Query, since: tuple[str, int] | None
    ) -> bool:
        """One attempt at :meth:`subscribe`; False if the channel was reset meanwhile."""
        key = query.key
        channel = self.router.channels.get(key)
        if channel is None:
            channel = self._channel(query)
            self.router.add(channel)
        outlet.subs[sub_id] = key
        self.subscribers.setdefault(key, set()).add(outlet)
        self._plans.clear()
        registered_at = self.position
        resumed = False
        if since is not None and channel.compiled is not None and channel.query.limit is None:
            resumed = await self._replay(outlet, channel, since, registered_at)
        if not self._current(channel):
            return False
        if not resumed or not channel.ready:
            rows = await asyncio.to_thread(self._read, query)
            if not self._current(channel):
                return False
            if not resumed:
                self._send_snapshot(outlet, sub_id, rows)
            elif not channel.ready:
                # The channel will start from rows this client never sees, and route the
                # change sets it pended against them: replay those to the client too, up
                # to the hub's position (no await between the last check and the start).
                cursor = registered_at
                while cursor.offset < self.position.offset:
                    target = self.position
                    since_cursor = (cursor.epoch, cursor.offset)
                    if not await self._replay(outlet, channel, since_cursor, target):
                        return False  # history lost: try again, from a snapshot
                    if not self._current(channel):
                        return False
                    cursor = target
            # Whoever reads a snapshot first starts the channel: usually its creator,
            # but also a later subscriber if the creator disconnected mid-snapshot.
            if not channel.ready:
                self._start_channel(channel, rows)
        if outlet.subs.get(sub_id) != key:
            return True  # unsubscribed meanwhile: no ready
        ready = encode(
            "ready",
            sub=sub_id,
            key=key,
            epoch=registered_at.epoch,
            pos=registered_at.offset,
            resumed=resumed,
            order=channel.order,
        )
        outlet.send(ready.data)
        return True

    def _current(self, channel: Channel) -> bool:
        return self.router.channels.get(channel.key) is channel

    def _deliver_frame(self, outlet: Outlet, frame: Frame) -> None:
        """Send one frame now (counted in the stats); a broken connection is dropped, and
        never stops the others' fan-out."""
        self.stats.frames_out += 1
        self.stats.bytes_out += len(frame)
        try:
            outlet.send(frame)
        except Exception:
            log.exception("sending to a connection failed; dropping it")
            self.drop(outlet)

    def _channel(self, query: Query) -> Channel:
        """A channel evaluated in Python where possible, else one that re-runs its query."""
        dialect = self.live.engine.dialect
        order = wire_order(query.order_by, query.collection, dialect)
        try:
            compiled = compile_predicate(
                query.where, query.collection, dialect, params=query.statement.compile().params
            )
            window = None
            if query.limit is not None:
                window = Window(
                    compile_order(query.order_by, query.collection, dialect), query.limit
                )
        except NotCompilable as exc:
            log.info("publication query falls back to re-running: %s", exc)
            return Channel(query.key, query, None, order=order)
        return Channel(query.key, query, compiled, window, order=order)

    def _start_channel(self, channel: Channel, rows: list[Row]) -> None:
        for pos, changes in self.router.start(channel.key, rows):
            self._fan_out(pos, {channel.key: changes})
        if channel.window is not None and self.router.dirty(channel.key):
            self._schedule_requery(channel.key)  # changes while it started emptied the window

    def _send_snapshot(self, outlet: Outlet, sub_id: str, rows: list[Row]) -> None:
        chunk = self.limits.snapshot_chunk
        name = self.router.channels[outlet.subs[sub_id]].collection
        docs = [{"c": name, "id": doc_id, "v": version, "d": doc} for doc_id, version, doc in rows]
        for start in range(0, max(len(docs), 1), chunk):
            part = docs[start : start + chunk]
            outlet.send(encode("snap", sub=sub_id, docs=part, more=start + chunk < len(docs)).data)

    async def _replay(
        self, outlet: Outlet, channel: Channel, since: tuple[str, int], upto: Position
    ) -> bool:
        """Send the changes after ``since`` up to ``upto``; False if history cannot tell."""
        epoch, pos = since
        if epoch != upto.epoch or pos > upto.offset:
            return False
        assert channel.compiled is not None
        broker, topic = self.live.broker, self.live.settings.topic
        cursor = Position(epoch, pos)
        frames: list[Frame] = []
        try:
            while cursor.offset < upto.offset:
                entries = await broker.read(topic, cursor, limit=500)
                wanted = [e for e in entries if e.offset <= upto.offset]
                if not wanted:
                    break
                for entry in wanted:
                    changes = ChangeSet.decode(entry.payload).changes
                    missed = replay(channel.compiled, channel.collection, changes)
                    if missed:
                        frames.append(tx_frame(entry.offset, [encode_part(channel.key, missed)]))
                cursor = Position(epoch, wanted[-1].offset)
        except HistoryLost:
            return False
        for frame in frames:
            outlet.send(frame)
        return True

    def _read(self, query: Query) -> list[tuple[str, int, dict[str, Any]]]:
        with self.live.engine.connect().execution_options(livesync_readonly=True) as conn:
            return query.collection.read(conn, query.statement)

    def unsubscribe(self, outlet: Outlet, sub_id: str) -> None:
        key = outlet.subs.pop(sub_id, None)
        if key is None:
            return
        self._plans.clear()
        if key in outlet.subs.values():
            return
        for frame in outlet.stop_buffering(key):
            self._deliver_frame(outlet, frame)
        holders = self.subscribers.get(key)
        if holders is not None:
            holders.discard(outlet)
            if not holders:
                del self.subscribers[key]
                self.router.remove(key)
                task = self._requery_tasks.pop(key, None)
                if task is not None:
                    task.cancel()

    def drop(self, outlet: Outlet) -> None:
        """Forget a closed connection."""
        for sub_id in list(outlet.subs):
            self.unsubscribe(outlet, sub_id)

    # ------------------------------------------------------------------ requery and resets
    def _schedule_requery(self, key: str) -> None:
        if key in self._requery_tasks:
            # Its read may have begun before this change committed: read once more after.
            self._requery_again.add(key)
            return
        self._requery_tasks[key] = asyncio.get_running_loop().create_task(self._requery(key))

    async def _requery(self, key: str) -> None:
        """Re-run a dirty channel's query (debounced) and send the difference.

        A change routed while the query was reading may have committed after the read
        began; the result cannot be trusted to include it, so the query runs once more.
        """
        again = False
        try:
            while True:  # debounce bursts; a channel still starting may have missed them
                await asyncio.sleep(self.requery_delay)
                channel = self.router.channels.get(key)
                if channel is None:
                    return
                if not channel.ready:
                    continue
                self._requery_again.discard(key)  # this read sees every change so far
                if not again and not self.router.dirty(key):
                    return
                pos = self.position.offset
                rows = await asyncio.to_thread(self._read, channel.query)
                if self.router.channels.get(key) is not channel:
                    return  # unsubscribed or reset meanwhile
                changes = self.router.refresh(key, rows)
                self._fan_out(pos, {key: changes} if changes else {})
                again = key in self._requery_again
                if not again:
                    return
        finally:
            self._requery_tasks.pop(key, None)
            self._requery_again.discard(key)

    def _reset_collection(self, collection: str, reason: str) -> None:
        for key, channel in list(self.router.channels.items()):
            if channel.collection == collection:
                self._reset_key(key, reason)

    def _reset_all(self, reason: str) -> None:
        for key in list(self.router.channels):
            self._reset_key(key, reason)

    def _reset_key(self, key: str, reason: str) -> None:
        self.stats.resets += 1
        self._plans.clear()
        frame = encode("reset", key=key, reason=reason).data
        for outlet in list(self.subscribers.pop(key, ())):
            if key in outlet.starting:
                continue  # not announced yet: its subscription starts again (see subscribe)
            if not (outlet.buffering and outlet.hold([key], frame)):
                self._deliver_frame(outlet, frame)  # in order with the tx frames held
            for sub_id, sub_key in list(outlet.subs.items()):
                if sub_key == key:
                    del outlet.subs[sub_id]
                    outlet.ended(sub_id)  # the client may reuse the id to subscribe again
        self.router.remove(key)
