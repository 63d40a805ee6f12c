"""The Sanic side: one websocket connection's loop, health, metrics, and the app factory.

Each connection runs one reader task, which feeds frames to the sans-I/O
:class:`~livesync.protocol.ServerConnection` and acts on its events. Outbound frames are
written straight to the connection's transport (:mod:`livesync.server.frames`): the hub
never awaits a connection, and the transport's write buffer is the outbound queue. The
protocol core closes a connection whose buffered backlog outgrows ``max_queue_bytes``
with the resumable code 4001.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
from sanic import Blueprint, Request, Sanic
from sanic.response import HTTPResponse, json, text

from ..protocol import (
    Close,
    CloseCode,
    ErrorCode,
    Hello,
    Join,
    Leave,
    Ping,
    Received,
    Send,
    ServerConnection,
    Sub,
    Unsub,
    Write,
    encode,
)
from ..publications import Context, SubscriptionError
from ..tokens import TokenError
from .frames import text_header
from .hub import Frame, Hub, Outlet
from .push import Member, Pushes
from .queue import WriteQueue
from .writes import ConnectionWrites

if TYPE_CHECKING:
    from ..live import LiveSync

log = logging.getLogger("livesync.gateway")


class Unauthorized(Exception):
    """Raise from an ``@live.authenticate`` function to refuse a connection (close 4503)."""


class Gateway:
    """Everything one gateway process shares between its connections."""

    def __init__(self, live: LiveSync) -> None:
        self.live = live
        self.limits = live.limits
        self.hub = Hub(live, limits=self.limits)
        self.pushes = Pushes(live)
        self.queue: WriteQueue | None = None
        self.connections = 0
        self.slow_disconnects = 0
        self._relay: Any = None
        self._request_janitor: Any = None
        self._backlog = 0
        self._backlog_at = 0.0
        self.outlets: set[Outlet] = set()
        self._closers: dict[Outlet, Callable[[Close], None]] = {}
        self._pinger: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.hub.start()
        await self.pushes.start()
        if self.live.settings.writes == "queue":
            self.queue = WriteQueue(self.live)
            await self.queue.start()
        self._pinger = asyncio.create_task(self._ping_all())
        if self.live.settings.run_relay:
            self._relay = self.live.relay()
            self._relay.start()
        if self.live.writable or self.live.methods:
            self._request_janitor = self.live.request_janitor()
            self._request_janitor.start()

    async def going_away(self, grace: float = 2.0) -> None:
        """Close every connection with 1001 (reconnect and resume) before the server stops.

        Left to itself Sanic closes websockets with 1000, which tells clients not to come
        back: after a routine restart every page would stay offline.
        """
        for close in list(self._closers.values()):
            close(Close(CloseCode.GOING_AWAY, "server restarting; reconnect"))
        deadline = time.monotonic() + grace
        while self._closers and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
        await self.hub.stop()
        await self.pushes.stop()
        if self.queue is not None:
            await self.queue.stop()
        if self._relay is not None:
            await asyncio.to_thread(self._relay.stop)
        if self._request_janitor is not None:
            await asyncio.to_thread(self._request_janitor.stop)
        await self.live.broker.aclose()

    # ------------------------------------------------------------------ one connection
    async def serve(self, request: Request, ws: Any) -> None:
        if not self.origin_allowed(request):
            await ws.close(CloseCode.FORBIDDEN_ORIGIN, "origin not allowed")
            return
        conn = ServerConnection(self.limits)
        transport = ws.io_proto.transport
        closing: list[Close] = []
        closers: set[asyncio.Task[None]] = set()

        def close(event: Close) -> None:
            if closing:
                return
            closing.append(event)
            task = asyncio.create_task(ws.close(int(event.code), event.reason))
            closers.add(task)  # the reader's recv() then ends, and the loop exits

        def send(data: Frame) -> None:
            """Write a frame now; the hub never awaits a connection."""
            if closing or transport.is_closing():
                return
            payload = data.encode() if isinstance(data, str) else data
            overflow = conn.backlog(transport.get_write_buffer_size(), len(payload))
            if overflow is not None:
                self.slow_disconnects += 1
                close(overflow)
                return
            try:
                transport.writelines((text_header(len(payload)), payload))
            except (RuntimeError, OSError):  # closed under us (EOF written, reset): stop
                closing.append(Close(CloseCode.GOING_AWAY, "connection lost"))

        outlet = Outlet(send, conn.ended)
        self.outlets.add(outlet)
        self._closers[outlet] = close
        session = uuid.uuid4().hex[:12]
        ctx: Context | None = None
        client = session  # idempotency scope: hello.client, else this connection only
        writes: ConnectionWrites | None = None
        member: Member | None = None
        self.connections += 1
        try:
            while not closing:
                try:
                    frame = await asyncio.wait_for(ws.recv(), self.live.settings.ping_timeout)
                except TimeoutError:
                    close(Close(CloseCode.PING_TIMEOUT, "no message in time"))
                    break
                if frame is None:
                    break
                for event in conn.receive(frame, time.monotonic()):
                    if isinstance(event, Send):
                        send(event.data)
                    elif isinstance(event, Close):
                        close(event)
                    elif isinstance(event, Received) and isinstance(event.message, Write):
                        assert ctx is not None  # the protocol core only lets hello through first
                        if writes is None:
                            execute = None if self.queue is None else self.queue.execute
                            writes = ConnectionWrites(
                                self.live, self.hub, outlet, ctx, client, send, execute
                            )
                        writes.submit(event.message)
                    elif isinstance(event, Received) and isinstance(event.message, Join):
                        assert ctx is not None and member is not None
                        send((await self.pushes.join(member, ctx, event.message)).data)
                    elif isinstance(event, Received) and isinstance(event.message, Leave):
                        assert member is not None
                        send(self.pushes.leave(member, event.message).data)
                    elif isinstance(event, Received):
                        if isinstance(event.message, Hello) and event.message.client:
                            client = event.message.client
                        ctx = await self._handle(
                            event.message, request, ctx, session, outlet, conn, send, close
                        )
                        if ctx is not None and member is None:
                            member = self.pushes.connect(outlet, ctx)
            if closers:
                await asyncio.gather(*closers, return_exceptions=True)
        finally:
            self.connections -= 1
            if member is not None:
                self.pushes.disconnect(member)
            for task in list(outlet.tasks):
                task.cancel()
            self.hub.drop(outlet)
            self.outlets.discard(outlet)
            self._closers.pop(outlet, None)

    async def _handle(
        self,
        message: Any,
        request: Request,
        ctx: Context | None,
        session: str,
        outlet: Outlet,
        conn: ServerConnection,
        send: Callable[[Frame], None],
        close: Callable[[Close], None],
    ) -> Context | None:
        if isinstance(message, Hello):
            try:
                identity = await _call(self.live.authenticator, message.token, request)
            except TokenError as exc:
                code = CloseCode.TOKEN_EXPIRED if exc.expired else CloseCode.UNAUTHORIZED
                close(Close(code, str(exc)))
                return None
            except Unauthorized as exc:
                close(Close(CloseCode.UNAUTHORIZED, str(exc) or "unauthorized"))
                return None
            welcome = encode(
                "welcome",
                v=conn.version,
                session=session,
                epoch=self.hub.position.epoch,
                ping_ms=int(self.live.settings.ping_interval * 1000),
                limits={**self.limits.announce(), "snapshot_chunk": self.limits.snapshot_chunk},
            )
            send(welcome.data)
            return Context(identity, session)
        assert ctx is not None  # the protocol core only lets hello through first
        if isinstance(message, Sub):
            try:
                query = self.live.subscribe_query(message.pub, ctx, message.params)
            except SubscriptionError as exc:
                conn.ended(message.id)
                send(encode("nosub", sub=message.id, code=exc.code, message=str(exc)).data)
                return ctx
            except Exception:
                log.exception("publication %r failed (session %s)", message.pub, session)
                conn.ended(message.id)
                send(
                    encode(
                        "nosub", sub=message.id, code=ErrorCode.INTERNAL, message="internal error"
                    ).data
                )
                return ctx
            since = None if message.since is None else (message.since.epoch, message.since.pos)
            task = asyncio.create_task(
                self._subscribe(outlet, message.id, query, since, conn, send, session)
            )
            outlet.tasks.add(task)
            task.add_done_callback(outlet.tasks.discard)
        elif isinstance(message, Unsub):
            self.hub.unsubscribe(outlet, message.id)
            send(encode("unsubbed", sub=message.id).data)
        elif isinstance(message, Ping):
            pass  # answered by the protocol core
        return ctx

    async def _subscribe(
        self,
        outlet: Outlet,
        sub_id: str,
        query: Any,
        since: Any,
        conn: ServerConnection,
        send: Callable[[Frame], None],
        session: str,
    ) -> None:
        try:
            await self.hub.subscribe(outlet, sub_id, query, since)
        except Exception:
            log.exception("subscription %r failed (session %s)", sub_id, session)
            conn.ended(sub_id)
            send(
                encode("nosub", sub=sub_id, code=ErrorCode.INTERNAL, message="internal error").data
            )

    async def _ping_all(self) -> None:
        """One timer pings every connection: no ping task per connection."""
        frame = orjson.dumps({"type": "ping"})
        while True:
            await asyncio.sleep(self.live.settings.ping_interval)
            for outlet in list(self.outlets):
                outlet.send(frame)

    def origin_allowed(self, request: Request) -> bool:
        """Whether a browser page on the request's ``Origin`` may use this gateway."""
        origin = request.headers.get("origin")
        if origin is None:
            return True  # not a browser: cross-site hijacking needs a browser
        allowed = self.live.settings.origins
        if allowed:
            return origin in allowed or "*" in allowed
        return bool(urlsplit(origin).netloc == request.headers.get("host"))

    # ------------------------------------------------------------------ http
    async def schemas(self, request: Request) -> HTTPResponse:
        """Each writable collection's JSON Schema and write policy, for client-side checks."""
        return json(self.live.schemas())

    # ------------------------------------------------------------------ health and metrics
    async def health(self, request: Request) -> HTTPResponse:
        ok = self.hub.connected
        body = {
            "status": "ok" if ok else "degraded",
            "broker": "connected" if ok else "unreachable",
            "epoch": self.hub.position.epoch,
            "position": self.hub.position.offset,
            "connections": self.connections,
        }
        return json(body, status=200 if ok else 503)

    async def metrics(self, request: Request) -> HTTPResponse:
        if time.monotonic() - self._backlog_at > 5:
            self._backlog_at = time.monotonic()
            try:
                self._backlog = await asyncio.to_thread(self.live.relay().backlog)
            except Exception:
                self._backlog = -1
        stats = self.hub.stats
        subscriptions = sum(len(s) for s in self.hub.subscribers.values())
        lines = [
            ("livesync_connections", "gauge", self.connections),
            ("livesync_subscriptions", "gauge", subscriptions),
            ("livesync_channels", "gauge", len(self.hub.router.channels)),
            ("livesync_change_sets_total", "counter", stats.change_sets),
            ("livesync_messages_out_total", "counter", stats.frames_out),
            ("livesync_bytes_out_total", "counter", stats.bytes_out),
            ("livesync_slow_disconnects_total", "counter", self.slow_disconnects),
            ("livesync_broker_lag_seconds", "gauge", round(stats.lag_seconds, 6)),
            ("livesync_outbox_backlog", "gauge", self._backlog),
            ("livesync_push_messages_out_total", "counter", self.pushes.delivered),
            ("livesync_write_queue_waiting", "gauge", self.queue.waiting if self.queue else 0),
            (
                "livesync_write_queue_withdrawn_total",
                "counter",
                self.queue.withdrawn if self.queue else 0,
            ),
        ]
        body = "".join(f"# TYPE {name} {kind}\n{name} {value}\n" for name, kind, value in lines)
        return text(body, content_type="text/plain; version=0.0.4")


async def _call(function: Callable[..., Any], *args: Any) -> Any:
    result = function(*args)
    if inspect.isawaitable(result):
        return await result
    return result


def blueprint(live: LiveSync, path: str = "/live") -> Blueprint:
    """Routes for ``path`` (websocket), ``path/schemas``, ``path/client/`` (the browser
    client's modules), ``/healthz`` and ``/metrics``, with their lifecycle."""
    gateway = Gateway(live)
    bp = Blueprint(f"livesync_{uuid.uuid4().hex[:8]}")

    @bp.before_server_start
    async def _start(app: Any) -> None:
        await gateway.start()

    @bp.before_server_stop
    async def _going_away(app: Any) -> None:
        await gateway.going_away()

    @bp.after_server_stop
    async def _stop(app: Any) -> None:
        await gateway.stop()

    async def live_socket(request: Request, ws: Any) -> None:
        await gateway.serve(request, ws)

    bp.add_websocket_route(live_socket, path)
    bp.add_route(gateway.schemas, path.rstrip("/") + "/schemas")
    bp.add_route(gateway.health, "/healthz")
    bp.add_route(gateway.metrics, "/metrics")
    client = client_files()
    if client is not None:  # the browser client, importable with no build step or npm
        bp.static(path.rstrip("/") + "/client/", str(client), name="livesync_client")

    shared = (path.rstrip("/") + "/client/", path.rstrip("/") + "/schemas")

    async def _cors(request: Request, response: HTTPResponse) -> None:
        # A page served by another origin that may open the websocket (the allow-list)
        # may also load the client's modules and the write schemas.
        origin = request.headers.get("origin")
        if origin and request.path.startswith(shared) and gateway.origin_allowed(request):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"

    bp.middleware(_cors, attach_to="response")
    bp.ctx.gateway = gateway
    return bp


def client_files() -> Path | None:
    """The JavaScript client's ES modules: ``livesync/client/`` in an installed wheel, or
    ``client-js/src/`` in a source checkout (an editable install)."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "client", package.parent / "client-js" / "src"):
        if (candidate / "index.js").is_file():
            return candidate
    return None


def create_app(live: LiveSync, path: str = "/live", name: str | None = None) -> Any:
    """A ready Sanic app serving ``live``."""
    # A stable name: ``livesync serve --workers N`` rebuilds the app in every worker.
    app = Sanic(name or "livesync")
    app.config.WEBSOCKET_MAX_SIZE = live.limits.max_frame_bytes
    app.config.WEBSOCKET_PING_INTERVAL = None  # type: ignore[assignment]  # we ping ourselves
    app.config.WEBSOCKET_PING_TIMEOUT = None  # type: ignore[assignment]
    bp = blueprint(live, path)
    app.blueprint(bp)
    app.ctx.gateway = bp.ctx.gateway
    return app
