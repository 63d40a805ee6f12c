"""The gateway's side of server push: who is connected, who joined what, and delivery.

:class:`Pushes` follows the broker topic ``<topic>:send`` (see :mod:`livesync.push`)
from the position it had when the gateway started, and writes each ``msg`` frame, as
the sender encoded it, to the matching connections of this gateway: by session id, by
user key, or by joined channel. It never awaits a connection (``Outlet.send`` writes to
the transport), and a broker failure is retried from the same position; lost history
(the broker restarted without persistence) skips to the current position, since
delivery is at most once anyway.

``join`` and ``leave`` are answered here: an ``ack`` with the request id, ``ok: true``,
or ``ok: false`` with ``not-found`` (no ``@live.channel`` pattern matches),
``forbidden`` (the rule said no, or the connection already joined ``max_channels``
channels) or ``internal`` (the rule raised; logged). Joining a channel twice, and
leaving one not joined, are accepted. Memberships belong to the connection and end
with it: a client joins again after reconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from ..brokers import HistoryLost, Position
from ..protocol import ErrorCode, Join, Leave, Send, encode, rejected
from ..publications import Context, SubscriptionError
from ..push import decode_push, user_key
from .hub import Outlet

if TYPE_CHECKING:
    from ..live import LiveSync

log = logging.getLogger("livesync.push")

K = TypeVar("K")


@dataclass(eq=False)
class Member:
    """One connection as push targets see it."""

    outlet: Outlet
    session: str
    user: bytes | None
    channels: set[str] = field(default_factory=set)


class Pushes:
    """See the module docstring. One per gateway process."""

    def __init__(self, live: LiveSync) -> None:
        self.live = live
        self.broker = live.push_broker
        self.topic = live.push_topic
        self.max_channels = live.settings.max_channels
        self.position = Position("", 0)
        self.delivered = 0  # msg frames written to connections
        self.sessions: dict[str, Member] = {}
        self.users: dict[bytes, set[Member]] = {}
        self.channels: dict[str, set[Member]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.position = await self.broker.position(self.topic)
        self._task = asyncio.create_task(self._follow(), name="livesync-push")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.broker is not self.live.broker:  # the gateway closes that one
            await self.broker.aclose()

    # ------------------------------------------------------------------ membership
    def connect(self, outlet: Outlet, ctx: Context) -> Member:
        """Register a connection that completed its handshake."""
        member = Member(outlet, ctx.session, self._user(ctx))
        self.sessions[member.session] = member
        if member.user is not None:
            self.users.setdefault(member.user, set()).add(member)
        return member

    def _user(self, ctx: Context) -> bytes | None:
        if ctx.identity is None:
            return None
        try:
            key = self.live.user_of(ctx.identity)
            return None if key is None else user_key(key)
        except Exception:
            log.warning(
                "session %s: no user key for its identity (not JSON?); "
                "messages to its user will not reach it",
                ctx.session,
                exc_info=True,
            )
            return None

    def disconnect(self, member: Member) -> None:
        """Forget a closed connection and its channels."""
        self.sessions.pop(member.session, None)
        if member.user is not None:
            _discard(self.users, member.user, member)
        for name in member.channels:
            _discard(self.channels, name, member)
        member.channels.clear()

    async def join(self, member: Member, ctx: Context, message: Join) -> Send:
        """Answer a ``join``: ask the channel's rule, then add the membership."""
        name = message.ch
        if name in member.channels:
            return encode("ack", id=message.id, ok=True)
        rule = self.live.channel_rules.rule_for(name)
        if rule is None:
            return rejected(message.id, ErrorCode.NOT_FOUND, f"no channel {name!r}")
        if len(member.channels) >= self.max_channels:
            limit = f"at most {self.max_channels} channels per connection"
            return rejected(message.id, ErrorCode.FORBIDDEN, limit)
        try:
            allowed = await asyncio.to_thread(rule, ctx, name)
            if inspect.isawaitable(allowed):
                allowed = await allowed
        except SubscriptionError as exc:  # Forbidden, with the application's message
            return rejected(message.id, ErrorCode.FORBIDDEN, str(exc))
        except Exception:
            log.exception("channel rule for %r failed (session %s)", name, ctx.session)
            return rejected(message.id, ErrorCode.INTERNAL, "internal error")
        if not allowed:
            return rejected(message.id, ErrorCode.FORBIDDEN, f"not allowed to join {name!r}")
        if member.session not in self.sessions:  # closed while the rule ran
            return encode("ack", id=message.id, ok=True)
        member.channels.add(name)
        self.channels.setdefault(name, set()).add(member)
        return encode("ack", id=message.id, ok=True)

    def leave(self, member: Member, message: Leave) -> Send:
        """Answer a ``leave`` (always accepted)."""
        if message.ch in member.channels:
            member.channels.discard(message.ch)
            _discard(self.channels, message.ch, member)
        return encode("ack", id=message.id, ok=True)

    # ------------------------------------------------------------------ delivery
    def deliver(self, payload: bytes) -> int:
        """Write one pushed message to its connections here; returns how many."""
        kind, key, frame = decode_push(payload)
        if kind == "session":
            found = self.sessions.get(key) if isinstance(key, str) else None
            members: list[Member] = [] if found is None else [found]
        elif kind == "user":
            members = list(self.users.get(user_key(key), ())) if key is not None else []
        else:
            members = list(self.channels.get(key, ())) if isinstance(key, str) else []
        for member in members:
            try:
                member.outlet.send(frame)
            except Exception:  # one broken connection must not stop the others
                log.exception("pushing to session %s failed", member.session)
        self.delivered += len(members)
        return len(members)

    async def _follow(self) -> None:
        broker = self.broker
        backoff = 0.1
        while True:
            try:
                entries = await broker.read(self.topic, self.position, limit=500, timeout=1.0)
                backoff = 0.1
            except HistoryLost as lost:
                log.warning("pushed messages lost (%s); continuing from now", lost)
                self.position = lost.current
                continue
            except Exception:
                log.warning("reading pushed messages failed; retrying in %.1fs", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            for entry in entries:
                try:
                    self.deliver(entry.payload)
                except Exception:
                    log.exception("skipping pushed message %d", entry.offset)
                self.position = Position(self.position.epoch, entry.offset)


def _discard(index: dict[K, set[Member]], key: K, member: Member) -> None:
    holders = index.get(key)
    if holders is not None:
        holders.discard(member)
        if not holders:
            del index[key]
