"""Server push: ``live.send(to_session | to_user | to_channel, event, data)``, ``join``/``leave``.

In one process over ``memory://``, across two gateways over Redis, and from another
process (a plain LiveSync with no gateway, as a web worker would have).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
import websockets

from livesync import Context, Forbidden, LiveSync, to_channel, to_session, to_user
from livesync.push import ChannelRules, Target, decode_push, encode_push
from tests.conftest import make_live
from tests.gateway_support import TIMEOUT, Client, connected, running_gateway

ROOT = Path(__file__).resolve().parent.parent


def setup(live: LiveSync) -> LiveSync:
    """Identity: ``{"id": <x-user header>, "admin": ...}``; users keyed by ``id``.

    Channels: ``news`` anyone; ``room:*`` members of the room (``room:<user id>`` or any room
    for admins); ``ops`` refused with a message; ``slow:*`` by an async rule; ``broken``
    raises.
    """

    @live.authenticate
    def by_header(token: str | None, request: Any) -> dict[str, Any] | None:
        user = request.headers.get("x-user")
        if user is None:
            return None
        return {"id": int(user), "admin": request.headers.get("x-admin") == "1"}

    live.user_key(lambda identity: identity["id"])
    live.channel("news")(lambda ctx, name: True)

    @live.channel("room:*")
    def room(ctx: Context, name: str) -> bool:
        return ctx.identity is not None and (
            ctx.identity["admin"] or name == f"room:{ctx.identity['id']}"
        )

    @live.channel("ops")
    def ops(ctx: Context, name: str) -> bool:
        raise Forbidden("operators only")

    @live.channel("slow:*")
    async def slow(ctx: Context, name: str) -> bool:
        await asyncio.sleep(0.01)
        return True

    @live.channel("broken")
    def broken(ctx: Context, name: str) -> bool:
        raise RuntimeError("secret detail")

    return live


async def next_message(client: Client) -> dict[str, Any]:
    """The next frame that is not a ping."""
    while True:
        message = await client.recv()
        if message["type"] != "ping":
            return message


async def nothing(client: Client, seconds: float = 0.3) -> bool:
    try:
        await asyncio.wait_for(next_message(client), seconds)
    except TimeoutError:
        return True
    return False


async def join(client: Client, request: str, channel: str) -> dict[str, Any]:
    await client.send(type="join", id=request, ch=channel)
    return await client.recv_type("ack")


class SessionClient(Client):
    """A client that remembers its ``welcome.session``."""

    session = ""


@asynccontextmanager
async def session_client(port: int, **headers: str) -> AsyncIterator[SessionClient]:
    """A connected client that knows its session id."""
    async with websockets.connect(
        f"ws://127.0.0.1:{port}/live", additional_headers=headers or None
    ) as ws:
        client = SessionClient(ws)
        await client.send(type="hello", v=[1])
        welcome = orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert welcome["type"] == "welcome"
        client.session = welcome["session"]
        yield client


# --------------------------------------------------------------------------- units
def test_targets_and_payloads() -> None:
    payload = encode_push(to_channel("room:1"), "said", {"text": "hi"}, 1 << 20)
    assert decode_push(payload) == (
        "channel",
        "room:1",
        b'{"type":"msg","ev":"said","data":{"text":"hi"},"ch":"room:1"}',
    )
    kind, key, frame = decode_push(encode_push(to_user({"b": 1, "a": 2}), "e", None, 1 << 20))
    assert (kind, key, frame) == ("user", {"b": 1, "a": 2}, b'{"type":"msg","ev":"e"}')
    assert to_session("s1") == Target("session", "s1")
    with pytest.raises(ValueError, match="channel name"):
        to_channel("")
    with pytest.raises(ValueError, match="event name"):
        encode_push(to_session("s"), "x" * 129, 1, 1 << 20)
    with pytest.raises(ValueError, match="exceeds"):
        encode_push(to_session("s"), "e", "x" * 2000, 1024)
    with pytest.raises(TypeError):
        encode_push(to_session("s"), "e", {1, 2}, 1 << 20)
    with pytest.raises(TypeError):
        to_user(object())


def test_the_first_matching_channel_pattern_decides() -> None:
    rules = ChannelRules()
    first, second = (lambda ctx, name: True), (lambda ctx, name: False)
    rules.add("room:vip", first)
    rules.add("room:*", second)
    assert rules.rule_for("room:vip") is first
    assert rules.rule_for("room:7") is second
    assert rules.rule_for("Room:7") is None  # case-sensitive
    assert rules.rule_for("lobby") is None
    with pytest.raises(ValueError, match="already registered"):
        rules.add("room:*", first)


# --------------------------------------------------------------------------- one gateway
@pytest.fixture
async def gateway(tmp_path: Any) -> AsyncIterator[tuple[LiveSync, int]]:
    live = setup(make_live(f"sqlite:///{tmp_path / 'push.db'}", ping_interval=30.0))
    async with running_gateway(live) as port:
        yield live, port
    live.close()


async def test_send_to_a_session_a_user_and_a_channel(gateway: tuple[LiveSync, int]) -> None:
    live, port = gateway
    async with (
        session_client(port, **{"x-user": "7"}) as alice,
        session_client(port, **{"x-user": "7"}) as alice_again,
        session_client(port, **{"x-user": "8"}) as bob,
        session_client(port) as anonymous,
    ):
        live.send(to_session(alice.session), "hello", {"n": 1})
        assert await next_message(alice) == {"type": "msg", "ev": "hello", "data": {"n": 1}}

        await live.send_async(to_user(7), "for-7", [1, 2])
        for client in (alice, alice_again):
            assert await next_message(client) == {"type": "msg", "ev": "for-7", "data": [1, 2]}

        assert await join(bob, "j1", "news") == {"type": "ack", "id": "j1", "ok": True}
        assert (await join(anonymous, "j1", "news"))["ok"] is True
        live.send(to_channel("news"), "headline", "all calm")
        expected = {"type": "msg", "ev": "headline", "data": "all calm", "ch": "news"}
        assert await next_message(bob) == expected
        assert await next_message(anonymous) == expected
        for client in (alice, alice_again, bob, anonymous):
            assert await nothing(client, 0.1)  # nobody got anything else


async def test_joins_are_denied_by_default_and_decided_by_rules(
    gateway: tuple[LiveSync, int], caplog: pytest.LogCaptureFixture
) -> None:
    live, port = gateway
    async with session_client(port, **{"x-user": "7"}) as alice:
        assert await join(alice, "j1", "lobby") == {
            "type": "ack",
            "id": "j1",
            "ok": False,
            "code": "not-found",
            "message": "no channel 'lobby'",
        }
        refused = await join(alice, "j2", "room:8")
        assert (refused["ok"], refused["code"]) == (False, "forbidden")
        assert (await join(alice, "j3", "ops"))["message"] == "operators only"
        failed = await join(alice, "j4", "broken")
        assert (failed["code"], failed["message"]) == ("internal", "internal error")
        assert "secret detail" in caplog.text
        assert (await join(alice, "j5", "room:7"))["ok"] is True
        assert (await join(alice, "j6", "room:7"))["ok"] is True  # joining twice is fine
        assert (await join(alice, "j7", "slow:1"))["ok"] is True  # async rule
        for name in ("room:8", "lobby", "ops", "broken"):
            live.send(to_channel(name), "leak", None)
        live.send(to_channel("room:7"), "mine", None)
        assert await next_message(alice) == {"type": "msg", "ev": "mine", "ch": "room:7"}
        assert await nothing(alice)
    async with session_client(port, **{"x-user": "1", "x-admin": "1"}) as admin:
        assert (await join(admin, "j1", "room:8"))["ok"] is True


async def test_leave_stops_messages_and_memberships_end_with_the_connection(
    gateway: tuple[LiveSync, int],
) -> None:
    live, port = gateway
    async with session_client(port) as client:
        await join(client, "j1", "news")
        await client.send(type="leave", id="l1", ch="news")
        assert await client.recv_type("ack") == {"type": "ack", "id": "l1", "ok": True}
        await client.send(type="leave", id="l2", ch="never-joined")
        assert (await client.recv_type("ack"))["ok"] is True
        live.send(to_channel("news"), "after-leave", None)
        assert await nothing(client)
        await join(client, "j2", "news")
    async with session_client(port) as again:  # a new connection starts with no channels
        live.send(to_channel("news"), "after-reconnect", None)
        assert await nothing(again)
    gateway_object = live.app.ctx.gateway
    assert gateway_object.pushes.channels == {} and gateway_object.pushes.sessions == {}


async def test_a_connection_joins_at_most_max_channels(tmp_path: Any) -> None:
    live = setup(make_live(f"sqlite:///{tmp_path / 'cap.db'}", max_channels=2))
    try:
        async with running_gateway(live) as port, connected(port) as client:
            assert (await join(client, "j1", "slow:1"))["ok"] is True
            assert (await join(client, "j2", "slow:2"))["ok"] is True
            refused = await join(client, "j3", "slow:3")
            assert (refused["code"], refused["message"]) == (
                "forbidden",
                "at most 2 channels per connection",
            )
            await client.send(type="join", id="bad", ch="")
            error = await client.recv_type("error")
            assert (error["code"], error["ref"]) == ("invalid-message", "bad")
    finally:
        live.close()


# --------------------------------------------------------------------------- Redis, processes
@pytest.mark.redis
async def test_send_from_another_process_reaches_two_gateways(
    postgres_url: str, redis_url: str, unique_topic: str
) -> None:
    first = setup(make_live(postgres_url, redis_url, topic=unique_topic, ping_interval=30.0))
    second = setup(LiveSync(postgres_url, redis_url, topic=unique_topic, ping_interval=30.0))
    sender = LiveSync(postgres_url, redis_url, topic=unique_topic)  # a web worker: no gateway
    try:
        async with (
            running_gateway(first) as port1,
            running_gateway(second) as port2,
            session_client(port1, **{"x-user": "7"}) as alice_1,
            session_client(port2, **{"x-user": "7"}) as alice_2,
            session_client(port2, **{"x-user": "8"}) as bob_2,
        ):
            assert (await join(alice_1, "j", "news"))["ok"] is True
            assert (await join(bob_2, "j", "news"))["ok"] is True

            await asyncio.to_thread(sender.send, to_user(7), "to-alice", {"x": 1})
            for client in (alice_1, alice_2):
                assert (await next_message(client))["ev"] == "to-alice"

            session = bob_2.session
            await asyncio.to_thread(sender.send, to_session(session), "to-bob", None)
            assert (await next_message(bob_2))["ev"] == "to-bob"

            # From a separate Python process, configured only by the environment.
            code = (
                "from livesync import LiveSync, to_channel\n"
                "live = LiveSync()\n"
                "live.send(to_channel('news'), 'from-a-process', {'pid': 1})\n"
                "live.close()\n"
            )
            env = {
                **os.environ,
                "LIVESYNC_DATABASE_URL": postgres_url,
                "LIVESYNC_BROKER_URL": redis_url,
                "LIVESYNC_TOPIC": unique_topic,
            }
            done = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-c", code], cwd=ROOT, env=env, timeout=60
            )
            assert done.returncode == 0
            expected = {"type": "msg", "ev": "from-a-process", "data": {"pid": 1}, "ch": "news"}
            assert await next_message(alice_1) == expected
            assert await next_message(bob_2) == expected
            for client in (alice_1, alice_2, bob_2):
                assert await nothing(client, 0.2)
    finally:
        sender.close()
        second.close()
        first.close()


def test_the_user_key_is_the_identity_by_default(tmp_path: Any) -> None:
    live = LiveSync(f"sqlite:///{tmp_path / 'u.db'}", "memory://user-key")
    try:
        assert live.user_of({"id": 7}) == {"id": 7}
        assert live.user_of(None) is None
        live.user_key(lambda identity: identity["id"])
        assert live.user_of({"id": 7}) == 7
    finally:
        live.close()
