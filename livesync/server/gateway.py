"""The Sanic side: the gateway's connections, their messages, keepalive, health, metrics.

A websocket request is taken over from Sanic at the handshake
(:mod:`livesync.server.upgrade`): the connection then lives on as a
:class:`~livesync.server.link.Link` (the transport's protocol: frames in and out) and a
:class:`Connection` (the sans-I/O :class:`~livesync.protocol.ServerConnection` and what the
gateway does with its events). No task or timer exists per idle connection: messages are
handled by a task that lives only while a connection has messages waiting, and one
gateway-wide timer pings every connection and closes the silent ones (4002). Outbound
frames are written straight to the transport (the hub never awaits a connection), and a
connection whose unsent backlog outgrows ``max_queue_bytes`` is closed with the
resumable code 4001.
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
from .frames import framed
from .hub import Frame, Hub, Outlet
from .link import Counters, Link
from .push import Member, Pushes
from .queue import WriteQueue
from .upgrade import take_over, websocket_route
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
        self.counters = Counters()
        self._relay: Any = None
        self._request_janitor: Any = None
        self._backlog = 0
        self._backlog_at = 0.0
        self.clients: set[Connection] = set()
        self._keepalive: asyncio.Task[None] | None = None

    @property
    def connections(self) -> int:
        return len(self.clients)

    @property
    def slow_disconnects(self) -> int:
        return self.counters.slow_disconnects

    async def start(self) -> None:
        await self.hub.start()
        await self.pushes.start()
        if self.live.settings.writes == "queue":
            self.queue = WriteQueue(self.live)
            await self.queue.start()
        self._keepalive = asyncio.create_task(self.keepalive())
        if self.live.settings.run_relay:
            self._relay = self.live.relay()
            self._relay.start()
        if self.live.writable or self.live.methods:
            self._request_janitor = self.live.request_janitor()
            self._request_janitor.start()

    async def going_away(self, grace: float = 2.0) -> None:
        """Close every connection with 1001 (reconnect and resume) before the server stops.

        Left to itself a server would drop them, or close with 1000, which tells clients
        not to come back: after a routine restart every page would stay offline.
        """
        for client in list(self.clients):
            client.link.close(Close(CloseCode.GOING_AWAY, "server restarting; reconnect"))
        deadline = time.monotonic() + grace
        while self.clients and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
        for client in list(self.clients):
            client.link.abort()
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
    async def accept(self, request: Request) -> None:
        """Take a websocket request over from Sanic and start serving it."""
        limits = self.limits
        link = take_over(request, limits.max_frame_bytes, limits.max_queue_bytes, self.counters)
        if link is None:
            return  # not a valid handshake: answered and closed
        if not self.origin_allowed(request):
            link.close(Close(CloseCode.FORBIDDEN_ORIGIN, "origin not allowed"))
            return
        client = Connection(self, link, request)
        self.clients.add(client)
        link.start(client.handle, client.lost)

    async def keepalive(self) -> None:
        """One timer for every connection: ping each every ``ping_interval``, and close
        (4002, resumable) each that sent no message for ``ping_timeout``.

        It wakes every ``min(ping_interval, ping_timeout / 4)``, so a silent connection is
        closed between ``ping_timeout`` and that much later. A task and a timer per
        connection would cost memory on every idle connection.
        """
        settings = self.live.settings
        ping = framed(orjson.dumps({"type": "ping"}))
        tick = min(settings.ping_interval, settings.ping_timeout / 4)
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + settings.ping_interval
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            pinging = now >= next_ping
            if pinging:
                next_ping = now + settings.ping_interval
            for client in list(self.clients):
                link = client.link
                if now - link.seen > settings.ping_timeout:
                    link.close(Close(CloseCode.PING_TIMEOUT, "no message in time"))
                elif pinging:
                    link.write(ping)

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


class Connection:
    """One client: the protocol core's state and what the gateway does with its events.

    Its messages arrive from its :class:`Link`, one at a time and in order (:meth:`handle`);
    the hub and the push delivery see it as an :class:`~livesync.server.hub.Outlet`.
    """

    __slots__ = (
        "client",
        "conn",
        "ctx",
        "gateway",
        "link",
        "member",
        "outlet",
        "request",
        "session",
        "writes",
    )

    def __init__(self, gateway: Gateway, link: Link, request: Request) -> None:
        self.gateway = gateway
        self.link = link
        self.request: Request | None = request  # for the authenticator; dropped after hello
        self.conn = ServerConnection(gateway.limits)
        self.outlet = Outlet(link.send, link.write, self.conn.ended)
        self.session = uuid.uuid4().hex[:12]
        self.ctx: Context | None = None
        self.client = self.session  # idempotency scope: hello.client, else this connection
        self.writes: ConnectionWrites | None = None
        self.member: Member | None = None

    def send(self, data: Frame) -> None:
        self.link.send(data)

    def close(self, event: Close) -> None:
        self.link.close(event)

    def lost(self) -> None:
        """The connection is gone: forget it everywhere."""
        gateway = self.gateway
        gateway.clients.discard(self)
        if self.member is not None:
            gateway.pushes.disconnect(self.member)
        for task in list(self.outlet.tasks):
            task.cancel()
        gateway.hub.drop(self.outlet)
        self.request = None

    async def handle(self, frame: bytes) -> None:
        """One inbound message: feed it to the protocol core and act on its events."""
        gateway = self.gateway
        for event in self.conn.receive(frame, time.monotonic()):
            if isinstance(event, Send):
                self.send(event.data)
            elif isinstance(event, Close):
                self.close(event)
            elif isinstance(event, Received) and isinstance(event.message, Write):
                assert self.ctx is not None  # the protocol core only lets hello through first
                if self.writes is None:
                    execute = None if gateway.queue is None else gateway.queue.execute
                    self.writes = ConnectionWrites(
                        gateway.live, gateway.hub, self.outlet, self.ctx, self.client, self.send,
                        execute,
                    )  # fmt: skip
                self.writes.submit(event.message)
            elif isinstance(event, Received) and isinstance(event.message, Join):
                assert self.ctx is not None and self.member is not None
                self.send((await gateway.pushes.join(self.member, self.ctx, event.message)).data)
            elif isinstance(event, Received) and isinstance(event.message, Leave):
                assert self.member is not None
                self.send(gateway.pushes.leave(self.member, event.message).data)
            elif isinstance(event, Received):
                message = event.message
                if isinstance(message, Hello):
                    if message.client:
                        self.client = message.client
                    self.ctx = await self._hello(message)
                    if self.ctx is not None and self.member is None and not self.link.closed:
                        self.member = gateway.pushes.connect(self.outlet, self.ctx)
                else:
                    self._handle(message)

    async def _hello(self, message: Hello) -> Context | None:
        gateway = self.gateway
        try:
            identity = await _call(gateway.live.authenticator, message.token, self.request)
        except TokenError as exc:
            code = CloseCode.TOKEN_EXPIRED if exc.expired else CloseCode.UNAUTHORIZED
            self.close(Close(code, str(exc)))
            return None
        except Unauthorized as exc:
            self.close(Close(CloseCode.UNAUTHORIZED, str(exc) or "unauthorized"))
            return None
        finally:
            self.request = None  # its headers and Sanic's objects are not needed any more
        welcome = encode(
            "welcome",
            v=self.conn.version,
            session=self.session,
            epoch=gateway.hub.position.epoch,
            ping_ms=int(gateway.live.settings.ping_interval * 1000),
            limits={**gateway.limits.announce(), "snapshot_chunk": gateway.limits.snapshot_chunk},
        )
        self.send(welcome.data)
        return Context(identity, self.session)

    def _handle(self, message: Any) -> None:
        gateway = self.gateway
        assert self.ctx is not None  # the protocol core only lets hello through first
        if isinstance(message, Sub):
            try:
                query = gateway.live.subscribe_query(message.pub, self.ctx, message.params)
            except SubscriptionError as exc:
                self.conn.ended(message.id)
                self.send(encode("nosub", sub=message.id, code=exc.code, message=str(exc)).data)
                return
            except Exception:
                log.exception("publication %r failed (session %s)", message.pub, self.session)
                self.conn.ended(message.id)
                self.send(
                    encode(
                        "nosub", sub=message.id, code=ErrorCode.INTERNAL, message="internal error"
                    ).data
                )
                return
            since = None if message.since is None else (message.since.epoch, message.since.pos)
            task = asyncio.create_task(self._subscribe(message.id, query, since))
            self.outlet.tasks.add(task)
            task.add_done_callback(self.outlet.tasks.discard)
        elif isinstance(message, Unsub):
            gateway.hub.unsubscribe(self.outlet, message.id)
            self.send(encode("unsubbed", sub=message.id).data)
        elif isinstance(message, Ping):
            pass  # answered by the protocol core

    async def _subscribe(self, sub_id: str, query: Any, since: Any) -> None:
        try:
            await self.gateway.hub.subscribe(self.outlet, sub_id, query, since)
        except Exception:
            log.exception("subscription %r failed (session %s)", sub_id, self.session)
            self.conn.ended(sub_id)
            self.send(
                encode("nosub", sub=sub_id, code=ErrorCode.INTERNAL, message="internal error").data
            )


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

    bp.add_route(websocket_route(gateway.accept), path, name="livesync_socket")
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
    bp = blueprint(live, path)
    app.blueprint(bp)
    app.ctx.gateway = bp.ctx.gateway
    return app
