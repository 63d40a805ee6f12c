"""One websocket connection after the handshake: bytes in, messages out, and frames back.

A :class:`Link` is the transport's ``asyncio.Protocol`` once the gateway has taken the
connection over from Sanic (:mod:`livesync.server.upgrade`). It is deliberately small,
because the gateway holds one per client and the goal is a few KB per idle connection:

* **No task while idle.** Inbound bytes go through the websockets library's sans-I/O
  parser in ``data_received`` (it answers pings and the closing handshake itself); each
  complete message is appended to an inbox, and a task to drain it exists only while
  there is something to drain. Messages are still handled one at a time, in order.
* **No timer per connection.** :attr:`seen` is the loop time of the last message; one
  gateway-wide timer pings every link and closes the silent ones
  (:meth:`livesync.server.gateway.Gateway.keepalive`).
* **Writes never wait.** :meth:`send` writes one message (a cached 2-10 byte header plus
  the payload, which may be shared by every recipient, :mod:`livesync.server.frames`);
  :meth:`write` writes bytes that are already whole frames (the hub's per-batch bytes).
  The transport's write buffer is the outbound queue; a link whose unsent backlog would
  pass ``max_queue_bytes`` is closed with 4001 (resumable) instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.frames import Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from ..protocol import Close, CloseCode, slow_consumer
from .frames import text_header

log = logging.getLogger("livesync.gateway")

Handler = Callable[[bytes], Awaitable[None]]


class Counters:
    """Counts shared by the links of one gateway (for its metrics)."""

    __slots__ = ("slow_disconnects",)

    def __init__(self) -> None:
        self.slow_disconnects = 0


_DATA = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)
CLOSE_TIMEOUT = 5.0  # seconds a peer has to answer our close frame before we abort


class Link(asyncio.Protocol):
    """See the module docstring. ``handler`` is awaited for each inbound message, in order;
    ``lost`` is called once, when the connection is gone."""

    __slots__ = (
        "_abort",
        "_inbox",
        "_partial",
        "_reader",
        "close_event",
        "closed",
        "closing",
        "counters",
        "handler",
        "lost",
        "max_queue_bytes",
        "parser",
        "seen",
        "transport",
    )

    def __init__(
        self,
        transport: Any,
        parser: ServerProtocol,
        max_queue_bytes: int,
        counters: Counters | None = None,
    ) -> None:
        self.transport = transport
        self.counters = counters
        self.parser = parser
        self.max_queue_bytes = max_queue_bytes
        self.seen = asyncio.get_running_loop().time()
        self.closing = False  # no more data frames: our close frame is sent, or the peer left
        self.closed = False  # the transport is gone
        self.close_event: Close | None = None  # why we closed, if we did
        self.handler: Handler | None = None
        self.lost: Callable[[], None] | None = None
        self._inbox: list[bytes] = []
        self._partial: list[bytes] | None = None  # a fragmented message being received
        self._reader: asyncio.Task[None] | None = None
        self._abort: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ outbound
    def send(self, frame: bytes | str) -> None:
        """Write one text message now (never waits; see :meth:`write` for the backlog)."""
        payload = frame.encode() if isinstance(frame, str) else frame
        if self._room(len(payload)):
            try:
                self.transport.writelines((text_header(len(payload)), payload))
            except (RuntimeError, OSError):  # closed under us (EOF written, reset): stop
                self.closing = True

    def write(self, data: bytes) -> None:
        """Write bytes that are already one or more whole text frames."""
        if self._room(len(data)):
            try:
                self.transport.write(data)
            except (RuntimeError, OSError):
                self.closing = True

    def _room(self, size: int) -> bool:
        """Whether ``size`` more bytes may be queued; closes a slow consumer (4001, the
        protocol core's rule: :func:`livesync.protocol.slow_consumer`)."""
        if self.closing:
            return False
        close = slow_consumer(self.transport.get_write_buffer_size(), size, self.max_queue_bytes)
        if close is not None:
            if self.counters is not None:
                self.counters.slow_disconnects += 1
            self.close(close)
            return False
        return True

    def close(self, event: Close) -> None:
        """Start the closing handshake with ``event``'s code; idempotent.

        Frames already written go out first. The peer answers with its close frame, and
        the TCP connection is closed then, or after :data:`CLOSE_TIMEOUT` at the latest.
        """
        if self.closing or self.closed:
            return
        self.closing = True
        self.close_event = event
        if self.parser.state is State.OPEN:
            self.parser.send_close(int(event.code), event.reason)
            self._flush()
        if not self.closed:
            loop = asyncio.get_running_loop()
            self._abort = loop.call_later(CLOSE_TIMEOUT, self.transport.abort)

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake."""
        if not self.closed:
            self.closing = True
            self.transport.abort()

    def _flush(self) -> None:
        """Write what the parser produced (pongs, close frames); EOF means close TCP."""
        for data in self.parser.data_to_send():
            if data:
                with contextlib.suppress(RuntimeError, OSError):
                    self.transport.write(data)
            elif not self.closed:
                self.transport.close()  # flushes the buffer first

    # ------------------------------------------------------------------ asyncio.Protocol
    def data_received(self, data: bytes) -> None:
        parser = self.parser
        parser.receive_data(data)
        self._flush()
        self._take(parser.events_received())

    def eof_received(self) -> bool | None:
        self.parser.receive_eof()
        self._flush()
        self._take(self.parser.events_received())
        return None  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = self.closing = True
        if self._abort is not None:
            self._abort.cancel()
            self._abort = None
        self._inbox.clear()
        if self._reader is not None:
            self._reader.cancel()
        lost, self.lost = self.lost, None
        if lost is not None:
            lost()

    def pause_writing(self) -> None:
        """Flow control is the backlog check in :meth:`send`; nothing waits on this."""

    def resume_writing(self) -> None:
        """See :meth:`pause_writing`."""

    # ------------------------------------------------------------------ inbound
    def _take(self, events: list[Any]) -> None:
        if self.parser.state is not State.OPEN:
            self.closing = True  # the peer's close frame (answered by the parser) or a failure
        for frame in events:
            opcode = frame.opcode
            if opcode not in _DATA:
                continue  # ping (answered), pong, close (handled by the parser)
            if not frame.fin:
                if self._partial is None:
                    self._partial = []
                self._partial.append(frame.data)
                continue
            if self._partial is not None:
                self._partial.append(frame.data)
                message, self._partial = b"".join(self._partial), None
            else:
                message = frame.data
            if not self.closing:
                self._inbox.append(message)
        if self._inbox:
            self.seen = asyncio.get_running_loop().time()
            if self._reader is None and self.handler is not None:
                self._reader = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        """Hand the inbox to the handler, one message at a time; ends when it is empty."""
        inbox = self._inbox
        try:
            while inbox and not self.closing and self.handler is not None:
                message = inbox.pop(0)
                await self.handler(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("handling a message failed; closing the connection")
            self.close(Close(CloseCode.SERVER_RESTART, "internal error"))
        finally:
            self._reader = None

    def start(self, handler: Handler, lost: Callable[[], None]) -> None:
        """Begin delivering messages (including any that arrived already) to ``handler``."""
        self.handler, self.lost = handler, lost
        if self.closed:
            lost()
            self.lost = None
            return
        if self._inbox and self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._drain())
