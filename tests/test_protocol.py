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
    WRITE_TYPES,
    Call,
    Close,
    CloseCode,
    ErrorCode,
    Hello,
    Insert,
    Join,
    Leave,
    Limits,
    Ping,
    Received,
    Remove,
    Send,
    ServerConnection,
    State,
    Sub,
    TokenBucket,
    Unsub,
    Update,
    encode,
    slow_consumer,
    wire_table,
    write_from_json,
    write_to_json,
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
    assert slow_consumer(0, 5000, 1000) is None  # one big write alone is always accepted
    assert slow_consumer(600, 400, 1000) is None
    close = slow_consumer(800, 300, 1000)
    assert close is not None and close.code is CloseCode.SLOW_CONSUMER and close.code.reconnect


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


# --------------------------------------------------------------------------- writes
def received(events: list[Any]) -> Any:
    (event,) = events
    assert isinstance(event, Received), events
    return event.message


def test_write_messages_are_parsed() -> None:
    conn = open_connection()
    insert = received(conn.receive(frame(type="insert", id="r1", c="todos", d={"a": 1}), now=1))
    assert isinstance(insert, Insert) and insert.d == {"a": 1}
    patch = [
        {"op": "add", "path": "/a", "value": None},  # a null value is a value
        {"op": "move", "from": "/a", "path": "/b"},
        {"op": "remove", "path": "/b", "extra": "ignored"},
    ]
    update = received(
        conn.receive(frame(type="update", id="r2", c="todos", doc="7", v=3, patch=patch), now=1)
    )
    assert isinstance(update, Update) and update.v == 3 and update.set_ is None
    assert update.patch is not None
    assert [op.to_json() for op in update.patch] == [
        {"op": "add", "path": "/a", "value": None},
        {"op": "move", "path": "/b", "from": "/a"},
        {"op": "remove", "path": "/b"},
    ]
    fields = received(
        conn.receive(frame(type="update", id="r3", c="t", doc="7", set={"x": 1}), now=1)
    )
    assert isinstance(fields, Update) and fields.set_ == {"x": 1} and fields.v is None
    remove = received(conn.receive(frame(type="remove", id="r4", c="todos", doc="7", v=4), now=1))
    assert isinstance(remove, Remove) and remove.doc == "7"
    call = received(conn.receive(frame(type="call", id="r5", m="archive"), now=1))
    assert isinstance(call, Call) and call.params == {}
    assert set(TRANSITIONS[State.OPEN]) >= WRITE_TYPES


PATCH = {"type": "update", "id": "r", "c": "t", "doc": "1"}


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        ({"type": "insert", "id": "r", "c": "t"}, "d"),
        ({"type": "insert", "id": "r", "c": "", "d": {}}, "c"),
        ({"type": "insert", "id": "r" * 65, "c": "t", "d": {}}, "id"),
        ({"type": "update", "id": "r", "c": "t", "doc": "1"}, "exactly one of patch or set"),
        ({"type": "update", "id": "r", "c": "t", "doc": "1", "set": {}, "patch": []}, "exactly"),
        ({"type": "update", "id": "r", "c": "t", "doc": "1", "v": -1, "set": {}}, "v"),
        ({"type": "update", "id": "r", "c": "t", "doc": "", "set": {}}, "doc"),
        ({**PATCH, "patch": [{"op": "add", "path": "/a"}]}, "needs a value"),
        ({**PATCH, "patch": [{"op": "copy", "path": "/a"}]}, "needs from"),
        ({**PATCH, "patch": [{"op": "merge", "path": "/a"}]}, "op"),
        ({"type": "remove", "id": "r", "c": "t"}, "doc"),
        ({"type": "call", "id": "r", "m": "x", "params": [1]}, "params"),
        ({"type": "call", "id": "r"}, "m"),
    ],
)  # fmt: skip
def test_malformed_writes_are_invalid_messages(fields: dict[str, Any], detail: str) -> None:
    conn = open_connection()
    (error,) = sent(conn.receive(frame(**fields), now=1))
    assert (error["type"], error["code"]) == ("error", ErrorCode.INVALID_MESSAGE)
    assert detail in error["message"]
    assert conn.state is State.OPEN


def test_hello_may_name_a_stable_client_id() -> None:
    conn = ServerConnection()
    hello = received(conn.receive(frame(type="hello", v=[1], client="c" * 8), now=0))
    assert isinstance(hello, Hello) and hello.client == "c" * 8
    for bad in ("short", "c" * 65, 12345678):
        events = ServerConnection().receive(frame(type="hello", v=[1], client=bad), now=0)
        assert sent(events)[0]["code"] == ErrorCode.INVALID_MESSAGE
        assert closed(events) is not None


def test_writes_have_their_own_rate_limit() -> None:
    conn = open_connection(Limits(write_rate_per_second=1, write_rate_burst=2))
    assert Limits(write_rate_per_second=1, write_rate_burst=2).announce()["write_rate_burst"] == 2
    calls = [conn.receive(frame(type="call", id=f"c{n}", m="m"), now=1.0) for n in range(3)]
    assert [isinstance(events[0], Received) for events in calls] == [True, True, False]
    assert sent(calls[2]) == [
        {
            "type": "ack",
            "id": "c2",
            "ok": False,
            "code": "rate-limited",
            "message": "too many writes; slow down",
        }
    ]
    assert isinstance(conn.receive(frame(type="sub", id="s", pub="p"), now=1.0)[0], Received)
    assert isinstance(conn.receive(frame(type="call", id="c3", m="m"), now=2.0)[0], Received)
    assert ErrorCode.INVALID == "invalid" and ErrorCode.NOT_FOUND == "not-found"


# --------------------------------------------------------------------------- channels
def test_join_and_leave_are_parsed() -> None:
    conn = open_connection()
    join = received(conn.receive(frame(type="join", id="j1", ch="room:7"), now=1))
    assert isinstance(join, Join) and (join.id, join.ch) == ("j1", "room:7")
    leave = received(conn.receive(frame(type="leave", id="l1", ch="room:7"), now=1))
    assert isinstance(leave, Leave) and leave.ch == "room:7"
    for bad in ({"id": "j2"}, {"id": "j2", "ch": ""}, {"id": "j2", "ch": "x" * 129}, {"ch": "a"}):
        (error,) = sent(conn.receive(frame(type="join", **bad), now=1))
        assert error["code"] == ErrorCode.INVALID_MESSAGE
    assert MESSAGES["msg"].direction == "server"
    assert Limits().announce()["max_channels"] == 100


def test_writes_survive_their_json_form() -> None:
    conn = open_connection()
    update = received(
        conn.receive(
            frame(type="update", id="r", c="t", doc="1", v=2, patch=[{"op": "add", "path": "/a",
                  "value": None}, {"op": "move", "from": "/a", "path": "/b"}], extra=1),
            now=1,
        )
    )  # fmt: skip
    assert write_from_json(write_to_json(update)) == update
    call = received(conn.receive(frame(type="call", id="c", m="m"), now=1))
    assert write_to_json(call) == {"type": "call", "id": "c", "m": "m"}
    assert write_from_json(write_to_json(call)) == call
