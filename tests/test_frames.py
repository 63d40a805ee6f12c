"""Hand-built websocket frames equal what the websockets library serializes."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode

from livesync.server.frames import text_header


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 200_000])
def test_headers_match_the_reference_serializer(length: int) -> None:
    payload = b"x" * length
    reference = Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])
    assert text_header(length) + payload == reference
