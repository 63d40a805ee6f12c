"""The sans-I/O protocol core, tested without any network."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import orjson
import pytest

from livesync.protocol import (
    CLIENT_TYPES,
    MESSAGES,
    TRANSITIONS,
    Close,
    CloseCode,
    ErrorCode,
    Hello,
    Limits,
    Ping,
    Received,
    Send,
    ServerConnection,
    State,
    Sub,
    TokenBucket,
    Unsub,
    encode,
    wire_table,
)


def frame(**fields: Any) -> bytes:
    return orjson.dumps(fields)


def sent(events: list[Any]) -> list[dict[str, Any]]:
    return [orjson.loads(e.data) for e in events if isinstance(e, Send)]


def closed(events: list[Any]) -> Close | None:
    return next((e for e in events if isinstance(e, Close)), None)


def open_connection(limits: Limits | None = None) -> ServerConnection:
    conn = ServerConnection(limits or Limits())
    events = conn.receive(frame(type="hello", v=[1], token="t"), now=0.0)
    assert isinstance(events[0], Received) and isinstance(events[0].message, Hello)
    assert conn.state is State.OPEN and conn.version == 1
    return conn


def test_the_core_imports_no_io_modules() -> None:
    code = (
        "import sys, livesync.protocol; "
        "bad = [m for m in ('asyncio', 'sanic', 'redis', 'sqlalchemy', 'websockets') "
        "if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_handshake_picks_the_highest_common_version() -> None:
    conn = ServerConnection()
    events = conn.receive(frame(type="hello", v=[3, 1, 2], extra="ignored"), now=0)
    assert [type(e) for e in events] == [Received]
    assert conn.version == 1


def test_unsupported_version_closes_terminally() -> None:
    conn = ServerConnection()
    close = closed(conn.receive(frame(type="hello", v=[7]), now=0))
    assert close is not None and close.code is CloseCode.UNSUPPORTED_VERSION
    assert not close.code.reconnect
    assert conn.receive(frame(type="hello", v=[1]), now=0) == []  # closed for good


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"{not json", ErrorCode.MALFORMED),
        (b"[1, 2]", ErrorCode.MALFORMED),
        (frame(type="sub", id="a", pub="p"), ErrorCode.UNEXPECTED_MESSAGE),
        (frame(type="nope"), ErrorCode.UNKNOWN_TYPE),
        (frame(type="hello"), ErrorCode.INVALID_MESSAGE),
    ],
)
def test_bad_first_frames_are_protocol_violations(data: bytes, code: ErrorCode) -> None:
    conn = ServerConnection()
    events = conn.receive(data, now=0)
    assert sent(events)[0]["code"] == code
    close = closed(events)
    assert close is not None and close.code is CloseCode.PROTOCOL_VIOLATION


@pytest.mark.parametrize(
    ("data", "code", "detail"),
    [
        (b"\xff\xfe", ErrorCode.MALFORMED, "not valid JSON"),
        (b'"text"', ErrorCode.MALFORMED, "not a JSON object"),
        (frame(type="launch", id="x"), ErrorCode.UNKNOWN_TYPE, "'launch'"),
        (frame(type="sub", id="s"), ErrorCode.INVALID_MESSAGE, "pub"),
        (frame(type="sub", id=5, pub="p"), ErrorCode.INVALID_MESSAGE, "id"),
        (frame(type="sub", id="s", pub="p", params=[1]), ErrorCode.INVALID_MESSAGE, "params"),
        (
            frame(type="sub", id="s", pub="p", since={"epoch": "e"}),
            ErrorCode.INVALID_MESSAGE,
            "pos",
        ),
        (frame(type="hello", v=[1]), ErrorCode.UNEXPECTED_MESSAGE, "state open"),
        (frame(type="welcome"), ErrorCode.UNKNOWN_TYPE, "'welcome'"),
    ],
)
def test_bad_frames_after_the_handshake_get_an_error_and_keep_the_connection(
    data: bytes, code: ErrorCode, detail: str
) -> None:
    conn = open_connection()
    events = conn.receive(data, now=1)
    (error,) = sent(events)
    assert (error["type"], error["code"]) == ("error", code)
    assert detail in error["message"]
    assert closed(events) is None and conn.state is State.OPEN
    ok = conn.receive(frame(type="sub", id="after", pub="p"), now=1)  # still usable
    assert isinstance(ok[0], Received)


def test_errors_name_the_offending_message() -> None:
    conn = open_connection()
    (error,) = sent(conn.receive(frame(type="sub", id="s1"), now=1))
    assert error["ref"] == "s1"


def test_oversized_frames_close_with_1009() -> None:
    conn = open_connection(Limits(max_frame_bytes=100))
    close = closed(conn.receive(b"{" + b" " * 200 + b"}", now=1))
    assert close is not None and close.code is CloseCode.MESSAGE_TOO_BIG
    assert close.code.reconnect


def test_subscriptions_ids_and_counts() -> None:
    conn = open_connection(Limits(max_subscriptions=2))
    events = conn.receive(frame(type="sub", id="a", pub="p", params={"x": 1}), now=1)
    assert isinstance(events[0], Received) and isinstance(events[0].message, Sub)
    assert events[0].message.params == {"x": 1}
    (dup,) = sent(conn.receive(frame(type="sub", id="a", pub="p"), now=1))
    assert dup["code"] == ErrorCode.DUPLICATE_SUBSCRIPTION
    conn.receive(frame(type="sub", id="b", pub="p"), now=1)
    (refused,) = sent(conn.receive(frame(type="sub", id="c", pub="p"), now=1))
    assert (refused["type"], refused["sub"], refused["code"]) == (
        "nosub",
        "c",
        ErrorCode.TOO_MANY_SUBSCRIPTIONS,
    )
    unsub = conn.receive(frame(type="unsub", id="a"), now=1)
    assert isinstance(unsub[0], Received) and isinstance(unsub[0].message, Unsub)
    assert isinstance(conn.receive(frame(type="sub", id="a", pub="p"), now=1)[0], Received)
    conn.ended("b")
    assert isinstance(conn.receive(frame(type="sub", id="b", pub="p"), now=1)[0], Received)


def test_resume_position_is_parsed() -> None:
    conn = open_connection()
    (event,) = conn.receive(
        frame(type="sub", id="a", pub="p", since={"epoch": "e1", "pos": 42}), now=1
    )
    assert isinstance(event, Received) and isinstance(event.message, Sub)
    assert event.message.since is not None and event.message.since.pos == 42


def test_ping_is_answered_by_the_core() -> None:
    conn = open_connection()
    events = conn.receive(frame(type="ping", id=7), now=1)
    assert isinstance(events[0], Received) and isinstance(events[0].message, Ping)
    assert sent(events) == [{"type": "pong", "id": 7}]


def test_a_flood_is_rate_limited_then_recovers() -> None:
    conn = open_connection(Limits(rate_per_second=10, rate_burst=5))
    results = [conn.receive(frame(type="pong"), now=1.0) for _ in range(8)]
    limited = [r for r in results if sent(r) and sent(r)[0].get("code") == ErrorCode.RATE_LIMITED]
    assert len(limited) == 3
    assert conn.state is State.OPEN
    assert isinstance(conn.receive(frame(type="pong"), now=2.0)[0], Received)


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=2, burst=2)
    assert [bucket.allow(0) for _ in range(3)] == [True, True, False]
    assert bucket.allow(0.5) and not bucket.allow(0.5)


def test_slow_consumers_are_closed_with_a_resumable_code() -> None:
    conn = open_connection(Limits(max_queue_bytes=1000))
    assert conn.backlog(0, 5000) is None  # one big frame alone is always accepted
    assert conn.backlog(600, 400) is None
    close = conn.backlog(800, 300)
    assert close is not None and close.code is CloseCode.SLOW_CONSUMER and close.code.reconnect
    assert conn.state is State.CLOSED


def test_close_code_ranges() -> None:
    for code in CloseCode:
        if 4000 <= code < 4500:
            assert code.reconnect
        if code >= 4500:
            assert not code.reconnect


def test_encode_leaves_out_none_fields() -> None:
    assert orjson.loads(encode("error", code="x", message="m", ref=None).data) == {
        "type": "error",
        "code": "x",
        "message": "m",
    }


def test_the_wire_table_covers_every_message_and_code() -> None:
    table = wire_table()
    assert set(table["messages"]) == set(MESSAGES)
    assert table["close_codes"]["SLOW_CONSUMER"] == {"code": 4001, "reconnect": True}
    assert table["error_codes"]["BAD_PARAMS"] == "bad-params"
    for state, moves in TRANSITIONS.items():
        assert set(moves) <= CLIENT_TYPES, state


def test_the_javascript_client_ships_the_same_wire_table() -> None:
    """client-js/src/wire.json is generated by ``python -m livesync.protocol``; never edited."""
    from pathlib import Path

    shipped = Path(__file__).resolve().parent.parent / "client-js" / "src" / "wire.json"
    assert orjson.loads(shipped.read_bytes()) == wire_table(), (
        "regenerate: python -m livesync.protocol > client-js/src/wire.json"
    )
