"""Taking a websocket upgrade away from Sanic: our own handshake, then the transport is ours.

Sanic's websocket support keeps, per connection, its HTTP protocol object, the request, a
websocket implementation with locks, events and queues, a task running the handler, a
task waiting to close, and a task plus a timer per ``recv``: about 26 KB per idle
connection before the application holds anything (measured with tracemalloc). A fan-out
gateway holds thousands of idle connections, so :func:`take_over` does the opening
handshake itself (the websockets library's sans-I/O ``ServerProtocol``, which Sanic uses
too) inside an ordinary HTTP route, and in the same step, with no ``await`` in between,
makes a :class:`~livesync.server.link.Link` the transport's protocol. No byte can reach
Sanic after the 101 response, and everything Sanic allocated for the request becomes
garbage when the route returns.

What Sanic must not do afterwards: send a response (the route is marked like Sanic's own
websocket handlers, see :func:`websocket_route`), close the transport when its connection
task ends, or wait for the connection at shutdown. Its protocol object is detached from
the transport and from the server's connection set for that. This relies on three details
of Sanic's HTTP/1 server (``is_websocket`` on the handler, ``Http.upgrade_websocket``
from the ``Upgrade`` header, ``SanicProtocol.transport``/``connections``), checked by
every gateway test.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from sanic import Request
from sanic.response import HTTPResponse, text
from websockets.datastructures import Headers
from websockets.http11 import Request as WsRequest
from websockets.protocol import State
from websockets.server import ServerProtocol

from .link import Counters, Link


def take_over(
    request: Request, max_frame_bytes: int, max_queue_bytes: int, counters: Counters | None = None
) -> Link | None:
    """Answer ``request``'s websocket handshake and return the connection's :class:`Link`.

    Returns None after answering a request that is not a valid websocket handshake (the
    websockets library's 4xx response, and the connection is closed).
    """
    transport: Any = request.transport
    sanic_protocol = transport.get_protocol()
    # Born open, as in Sanic: ``accept`` only checks the request and builds the response;
    # the parser reads frames from the first byte after it.
    parser = ServerProtocol(max_size=max_frame_bytes, state=State.OPEN)
    response = parser.accept(WsRequest(path=request.path, headers=Headers(request.headers)))
    link = Link(transport, parser, max_queue_bytes, counters)
    # No await from here on: the 101 goes out and the transport changes hands at once.
    leftover = bytes(getattr(sanic_protocol, "recv_buffer", b"") or b"")
    _detach(sanic_protocol)
    transport.set_protocol(link)
    transport.write(response.serialize())
    if response.status_code != 101:
        transport.close()
        return None
    transport.resume_reading()  # Sanic pauses reading when its buffer fills
    if leftover:
        link.data_received(leftover)  # frames a client sent right behind its request
    return link


def _detach(sanic_protocol: Any) -> None:
    """Make Sanic forget the connection: no close when its task ends, no wait at shutdown."""
    connections = getattr(sanic_protocol, "connections", None)
    if connections is not None:
        connections.discard(sanic_protocol)
    if hasattr(sanic_protocol, "recv_buffer"):
        sanic_protocol.recv_buffer = bytearray()
    sanic_protocol.transport = None


def websocket_route(
    accept: Callable[[Request], Awaitable[None]],
) -> Callable[[Request], Coroutine[Any, Any, HTTPResponse | None]]:
    """An HTTP route handler that calls ``accept`` for websocket upgrade requests (which
    must call :func:`take_over`) and answers 426 to anything else."""

    async def handler(request: Request) -> HTTPResponse | None:
        if request.headers.get("upgrade", "").lower() != "websocket":
            return text("websocket endpoint: upgrade required", status=426)
        if not hasattr(request.transport, "set_protocol"):  # ASGI: no socket to take over
            return text("the livesync gateway needs Sanic's own server, not ASGI", status=501)
        await accept(request)
        return None  # the connection is no longer Sanic's: nothing to send

    # Sanic sends nothing after a handler so marked returns None (as for its own
    # websocket routes), and its HTTP/1 loop ends once a request asked for an upgrade.
    handler.is_websocket = True  # type: ignore[attr-defined]
    return handler
