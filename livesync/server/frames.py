"""WebSocket text frames built by hand, so one message costs one header per recipient.

The gateway writes ``header + payload`` straight to each connection's transport instead of
going through the websocket library's ``send`` for every recipient, which built and
copied a frame per connection and cost most of the gateway's CPU per delivery. The payload
bytes are shared by every recipient; only the 2-10 byte header is per write, and headers
are cached by length. Server-to-client frames are never masked (RFC 6455 §5.1).
"""

from __future__ import annotations

import struct
from functools import lru_cache

_FIN_TEXT = 0x81


@lru_cache(maxsize=4096)
def text_header(length: int) -> bytes:
    """The header of one unfragmented, unmasked text frame carrying ``length`` bytes."""
    if length < 126:
        return bytes((_FIN_TEXT, length))
    if length < 1 << 16:
        return struct.pack("!BBH", _FIN_TEXT, 126, length)
    return struct.pack("!BBQ", _FIN_TEXT, 127, length)


def framed(payload: bytes) -> bytes:
    """``payload`` as one whole text frame (header + payload), to be written as is."""
    return text_header(len(payload)) + payload
