"""The gateway end to end: a real Sanic server, real websockets, real databases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import websockets
from sqlalchemy import select, update

from livesync import LiveSync
from livesync.publications import Context, Forbidden
from tests.conftest import make_live
from tests.gateway_support import TIMEOUT, connected, running_app, running_gateway
from tests.models import Item


@pytest.fixture
async def gateway(database_url: str) -> AsyncIterator[tuple[LiveSync, int]]:
    live = make_live(database_url, ping_interval=30.0)
    live.collection(Item, publish=True)

    @live.publication("items_min_qty")
    def items_min_qty(ctx: Context, min_qty: int) -> Any:
        return select(Item).where(Item.qty >= min_qty)

    @live.publication("top_items")
    def top_items(ctx: Context, n: int = 2) -> Any:
        return select(Item).order_by(Item.qty.desc(), Item.id).limit(n)

    @live.publication("private")
    def private(ctx: Context) -> Any:
        raise Forbidden("members only")

    async with running_gateway(live) as port:
        yield live, port
    live.close()


def write(live: LiveSync, *items: Item) -> None:
    with live.sessionmaker() as s:
        s.add_all(items)
        s.commit()


async def in_thread(function: Any, *args: Any) -> Any:
    return await asyncio.to_thread(function, *args)


def changes(tx: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(c["op"], c["c"], c["id"]) for part in tx["parts"] for c in part["ch"]]


async def test_snapshot_then_live_changes(gateway: tuple[LiveSync, int]) -> None:
    live, port = gateway
    await in_thread(write, live, Item(id=1, title="before"))
    async with connected(port) as client:
        docs, ready = await client.subscribe("all", "t_items")
        assert [(d["id"], d["v"], d["d"]["title"]) for d in docs] == [("1", 1, "before")]
        assert (ready["resumed"], ready["sub"]) == (False, "all")

        def edit() -> None:
            with live.sessionmaker() as s:
                item = s.get(Item, 1)
                assert item is not None
                item.title = "after"
                s.add(Item(id=2, title="new"))
                s.commit()

        await in_thread(edit)
        tx = await client.recv_type("tx")
        assert sorted(changes(tx)) == [("patch", "t_items", "1"), ("put", "t_items", "2")]
        assert all(part["key"] == ready["key"] for part in tx["parts"])


async def test_filters_send_enter_change_and_leave(gateway: tuple[LiveSync, int]) -> None:
    live, port = gateway
    await in_thread(write, live, Item(id=1, title="a", qty=1), Item(id=2, title="b", qty=5))
    async with connected(port) as client:
        docs, _ = await client.subscribe("big", "items_min_qty", params={"min_qty": 3})
        assert [d["id"] for d in docs] == ["2"]

        def bulk(statement: Any) -> None:
            with live.sessionmaker() as s:
                s.execute(statement)
                s.commit()

        await in_thread(bulk, update(Item).where(Item.id == 1).values(qty=4))
        assert changes(await client.recv_type("tx")) == [("put", "t_items", "1")]
        await in_thread(bulk, update(Item).where(Item.id == 2).values(qty=0))
        assert changes(await client.recv_type("tx")) == [("del", "t_items", "2")]
        await in_thread(bulk, update(Item).where(Item.id == 1).values(title="still big"))
        tx = await client.recv_type("tx")
        assert changes(tx) == [("patch", "t_items", "1")]


async def test_windows_stay_exact(gateway: tuple[LiveSync, int]) -> None:
    live, port = gateway
    await in_thread(
        write, live, Item(id=1, title="a", qty=1), Item(id=2, title="b", qty=2),
        Item(id=3, title="c", qty=3),
    )  # fmt: skip
    async with connected(port) as client:
        docs, ready = await client.subscribe("top", "top_items", params={"n": 2})
        assert [d["id"] for d in docs] == ["3", "2"]
        assert [(o["f"], o["desc"]) for o in ready["order"]] == [("qty", True), ("id", False)]

        # A newcomer that sorts inside pushes the last one out, in the write's own frame.
        await in_thread(write, live, Item(id=4, title="d", qty=5))
        tx = await client.recv_type("tx")
        assert sorted(changes(tx)) == [("del", "t_items", "2"), ("put", "t_items", "4")]

        def set_qty(item_id: int, qty: int) -> None:
            with live.sessionmaker() as s:
                s.execute(update(Item).where(Item.id == item_id).values(qty=qty))
                s.commit()

        # A document leaving a full window: it goes at once, and the next one is fetched.
        await in_thread(set_qty, 4, 0)
        tx = await client.recv_type("tx")
        assert changes(tx) == [("del", "t_items", "4")]
        refill = await client.recv_type("tx")
        assert changes(refill) == [("put", "t_items", "2")]
        assert refill["pos"] >= tx["pos"]


async def test_resume_sends_only_what_was_missed(gateway: tuple[LiveSync, int]) -> None:
    live, port = gateway
    await in_thread(write, live, Item(id=1, title="a"))
    async with connected(port) as client:
        _, ready = await client.subscribe("all", "t_items")
    await in_thread(write, live, Item(id=2, title="missed"))
    async with connected(port) as client:
        since = {"epoch": ready["epoch"], "pos": ready["pos"]}
        replayed, again = await client.subscribe("all", "t_items", since=since)
        assert again["resumed"] is True
        assert [changes(tx) for tx in replayed] == [[("put", "t_items", "2")]]
        stale = {"epoch": "another-epoch", "pos": 1}
        docs, fresh = await client.subscribe("again", "t_items", since=stale)
        assert fresh["resumed"] is False
        assert sorted(d["id"] for d in docs) == ["1", "2"]


async def test_subscription_errors_keep_the_connection(gateway: tuple[LiveSync, int]) -> None:
    _, port = gateway
    async with connected(port) as client:
        for pub, params, code in [
            ("nope", {}, "unknown-publication"),
            ("items_min_qty", {"min_qty": "many"}, "bad-params"),
            ("private", {}, "forbidden"),
        ]:
            _, nosub = await client.subscribe("s", pub, params=params)
            assert (nosub["type"], nosub["code"]) == ("nosub", code)
        await client.ws.send("{oops")
        assert (await client.recv_type("error"))["code"] == "malformed"
        _, ready = await client.subscribe("s", "t_items")  # the id is free again
        assert ready["type"] == "ready"


async def test_foreign_origins_are_refused(gateway: tuple[LiveSync, int]) -> None:
    _, port = gateway
    async with websockets.connect(
        f"ws://127.0.0.1:{port}/live", additional_headers={"Origin": "https://evil.example"}
    ) as ws:
        with pytest.raises(websockets.ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert info.value.rcvd is not None and info.value.rcvd.code == 4504
    async with connected(port, Origin=f"http://127.0.0.1:{port}") as client:
        await client.send(type="ping", id=1)
        assert await client.recv_type("pong") == {"type": "pong", "id": 1}


async def test_tokens_are_required_when_a_secret_is_set(database_url: str) -> None:
    live = make_live(database_url, secret="s" * 32)
    live.collection(Item, publish=True)
    try:
        async with running_gateway(live) as port:
            for token, code in [(None, 4503), ("forged", 4503)]:
                async with websockets.connect(f"ws://127.0.0.1:{port}/live") as ws:
                    await ws.send(
                        orjson.dumps({"type": "hello", "v": [1], "token": token}).decode()
                    )
                    with pytest.raises(websockets.ConnectionClosed) as info:
                        await asyncio.wait_for(ws.recv(), TIMEOUT)
                    assert info.value.rcvd is not None and info.value.rcvd.code == code
            async with connected(port, token=live.tokens.issue({"user": 1})) as client:
                _, ready = await client.subscribe("all", "t_items")
                assert ready["type"] == "ready"
    finally:
        live.close()


async def test_health_and_metrics(gateway: tuple[LiveSync, int]) -> None:
    live, port = gateway
    async with connected(port) as client:
        await client.subscribe("all", "t_items")
        await in_thread(write, live, Item(id=1, title="x"))
        await client.recv_type("tx")
        health = await in_thread(_get, port, "/healthz")
        assert orjson.loads(health)["status"] == "ok"
        metrics = (await in_thread(_get, port, "/metrics")).decode()
    assert "livesync_connections 1" in metrics
    assert "livesync_subscriptions 1" in metrics
    assert "livesync_messages_out_total 1" in metrics


async def test_a_stopping_server_tells_clients_to_come_back(database_url: str) -> None:
    live = make_live(database_url, ping_interval=30.0)
    live.collection(Item, publish=True)
    try:
        async with running_gateway(live) as port:
            ws = await websockets.connect(f"ws://127.0.0.1:{port}/live")
            await ws.send(orjson.dumps({"type": "hello", "v": [1]}).decode())
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
        assert ws.close_code == 1001  # reconnect and resume; 1000 would mean "stay away"
    finally:
        live.close()


async def test_the_browser_client_is_served_next_to_the_socket(
    gateway: tuple[LiveSync, int],
) -> None:
    _, port = gateway
    headers, body = await in_thread(_get_with_headers, port, "/live/client/index.js")
    assert "javascript" in headers["Content-Type"]  # module scripts need a JavaScript type
    assert b"export" in body and b"connect" in body


async def test_allowed_origins_may_load_the_client_and_the_schemas(database_url: str) -> None:
    live = make_live(database_url, origins=["http://app.example"])
    live.collection(Item, publish=True)
    try:
        async with running_gateway(live) as port:
            for path in ("/live/client/index.js", "/live/schemas"):
                allowed, _ = await in_thread(
                    _get_with_headers, port, path, {"Origin": "http://app.example"}
                )
                assert allowed["Access-Control-Allow-Origin"] == "http://app.example"
                other, _ = await in_thread(
                    _get_with_headers, port, path, {"Origin": "http://evil.example"}
                )
                assert other["Access-Control-Allow-Origin"] is None
    finally:
        live.close()


def _get_with_headers(
    port: int, path: str, headers: dict[str, str] | None = None
) -> tuple[Any, bytes]:
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        return response.headers, response.read()


def _get(port: int, path: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=TIMEOUT) as response:
        body: bytes = response.read()
        return body


async def test_bad_input_never_hurts_the_connection_or_other_clients(
    database_url: str,
) -> None:
    live = make_live(database_url, max_frame_bytes=4096, rate_per_second=5, rate_burst=20)
    live.collection(Item, publish=True)
    try:
        async with running_gateway(live) as port, connected(port) as bystander:
            await bystander.subscribe("all", "t_items")
            async with connected(port) as client:
                await client.subscribe("all", "t_items")
                await client.send(type="sub", id="all", pub="t_items")  # same id twice
                assert (await client.recv_type("error"))["code"] == "duplicate-subscription"
                await client.send(type="sub", pub="t_items")  # a missing field
                assert (await client.recv_type("error"))["code"] == "invalid-message"
                await client.send(type="sub", id=["x"], pub="t_items")  # a wrong type
                assert (await client.recv_type("error"))["code"] == "invalid-message"
                await client.send(type="teleport")
                assert (await client.recv_type("error"))["code"] == "unknown-type"
                for _ in range(40):  # a flood
                    await client.send(type="pong")
                assert (await client.recv_type("error"))["code"] == "rate-limited"
            async with connected(port) as giant:
                await giant.ws.send("[" + "1," * 5000 + "1]")
                with pytest.raises(websockets.ConnectionClosed) as info:
                    await asyncio.wait_for(giant.ws.recv(), TIMEOUT)
                assert info.value.rcvd is not None and info.value.rcvd.code == 1009
            await in_thread(write, live, Item(id=1, title="still flowing"))
            assert changes(await bystander.recv_type("tx")) == [("put", "t_items", "1")]
    finally:
        live.close()


async def test_a_slow_client_is_cut_off_with_a_resumable_code(database_url: str) -> None:
    live = make_live(database_url, max_queue_bytes=4096)
    live.collection(Item, publish=True)
    try:
        async with running_gateway(live) as port, connected(port) as client:
            await client.subscribe("all", "t_items")
            client.ws.transport.pause_reading()  # stop reading: the server's queue fills up

            gateway = live.app.ctx.gateway

            def flood() -> None:  # until the server gives up on the client
                for i in range(1, 3000):
                    write(live, Item(id=i, title="x", data={"blob": "x" * 8000}))
                    if gateway.slow_disconnects:
                        return

            await in_thread(flood)
            client.ws.transport.resume_reading()
            with pytest.raises(websockets.ConnectionClosed) as info:
                while True:
                    await asyncio.wait_for(client.ws.recv(), TIMEOUT)
            assert info.value.rcvd is not None and info.value.rcvd.code == 4001
            metrics = (await in_thread(_get, port, "/metrics")).decode()
            assert "livesync_slow_disconnects_total 1" in metrics
    finally:
        live.close()


async def test_silent_clients_are_closed_with_a_resumable_code(database_url: str) -> None:
    live = make_live(database_url, ping_interval=0.2, ping_timeout=0.5)
    live.collection(Item, publish=True)
    try:
        async with running_gateway(live) as port, connected(port) as client:
            assert (await client.recv_type("ping"))["type"] == "ping"  # the server pings
            with pytest.raises(websockets.ConnectionClosed) as info:
                while True:  # never answer
                    await asyncio.wait_for(client.ws.recv(), TIMEOUT)
            assert info.value.rcvd is not None and info.value.rcvd.code == 4002
    finally:
        live.close()


async def test_the_blueprint_mounts_into_an_existing_app(database_url: str) -> None:
    from sanic import Sanic
    from sanic.response import text

    live = make_live(database_url)
    live.collection(Item, publish=True)
    app = Sanic("existing_app")

    @app.get("/")
    async def home(request: Any) -> Any:
        return text("the app's own page")

    app.blueprint(live.blueprint("/realtime"))
    try:
        async with running_app(app) as port:
            assert await in_thread(_get, port, "/") == b"the app's own page"
            async with websockets.connect(f"ws://127.0.0.1:{port}/realtime") as ws:
                await ws.send(orjson.dumps({"type": "hello", "v": [1]}).decode())
                assert orjson.loads(await ws.recv())["type"] == "welcome"
    finally:
        live.close()


async def test_a_custom_authenticator_decides_who_connects(database_url: str) -> None:
    from livesync.server import Unauthorized

    live = make_live(database_url)
    live.collection(Item)

    @live.authenticate
    async def by_header(token: str | None, request: Any) -> Any:
        if request.headers.get("x-user") is None:
            raise Unauthorized("who are you?")
        return {"user": request.headers["x-user"]}

    @live.publication("mine")
    def mine(ctx: Context) -> Any:
        return select(Item).where(Item.title == ctx.identity["user"])

    try:
        async with running_gateway(live) as port:
            async with websockets.connect(f"ws://127.0.0.1:{port}/live") as ws:
                await ws.send(orjson.dumps({"type": "hello", "v": [1]}).decode())
                with pytest.raises(websockets.ConnectionClosed) as info:
                    await asyncio.wait_for(ws.recv(), TIMEOUT)
                assert info.value.rcvd is not None and info.value.rcvd.code == 4503
            await in_thread(write, live, Item(id=1, title="ada"), Item(id=2, title="bob"))
            async with connected(port, **{"x-user": "ada"}) as client:
                docs, _ = await client.subscribe("mine", "mine")
                assert [d["id"] for d in docs] == ["1"]
    finally:
        live.close()


async def test_a_channel_survives_its_creator_leaving_mid_snapshot(
    gateway: tuple[LiveSync, int],
) -> None:
    import time

    live, port = gateway
    hub = live.app.ctx.gateway.hub
    real_read = hub._read
    calls = 0

    def slow_read(query: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            time.sleep(0.5)  # the creator's snapshot takes a while...
        return real_read(query)

    hub._read = slow_read
    async with connected(port) as late:
        async with connected(port) as creator:
            await creator.send(type="sub", id="all", pub="t_items")
            await asyncio.sleep(0.1)
            _, ready = await late.subscribe("all", "t_items")  # joins the unfinished channel
            assert ready["type"] == "ready"
        # The creator left before its snapshot finished; the late subscriber still goes live.
        await asyncio.sleep(0.6)
        await in_thread(write, live, Item(id=1, title="after"))
        assert changes(await late.recv_type("tx")) == [("put", "t_items", "1")]


async def test_a_requery_that_read_before_a_commit_reads_again(database_url: str) -> None:
    import threading

    from sqlalchemy import func

    live = make_live(database_url, ping_interval=30.0)
    live.collection(Item)

    @live.publication("titled")  # a function: only the database can evaluate it
    def titled(ctx: Context) -> Any:
        return select(Item).where(func.length(Item.title) > 0)

    try:
        async with running_gateway(live) as port, connected(port) as client:
            await client.subscribe("t", "titled")
            hub = live.app.ctx.gateway.hub
            real_read = hub._read
            read_done, release = threading.Event(), threading.Event()

            def stale_read(query: Any) -> Any:
                rows = real_read(query)
                if not read_done.is_set():  # the first requery's read returns late, stale
                    read_done.set()
                    release.wait(5)
                return rows

            hub._read = stale_read
            await in_thread(write, live, Item(id=1, title="one"))
            assert await in_thread(read_done.wait, 5)
            await in_thread(write, live, Item(id=2, title="two"))  # committed after the read
            for _ in range(100):
                if hub._requery_again:
                    break
                await asyncio.sleep(0.01)
            release.set()
            assert changes(await client.recv_type("tx")) == [("put", "t_items", "1")]
            assert changes(await client.recv_type("tx")) == [("put", "t_items", "2")]
    finally:
        live.close()


async def test_fence_waiters_resolve_on_delivery_and_on_lost_history(
    gateway: tuple[LiveSync, int],
) -> None:
    from livesync import Change, ChangeSet

    live, _ = gateway
    hub = live.app.ctx.gateway.hub
    delivered = hub.expect("a" * 32)
    hub.deliver(10**6, ChangeSet((Change("t_items", "9", "delete", 2, 1),), id="a" * 32))
    assert delivered.done() and delivered.result() == frozenset()
    lost, dropped = hub.expect("b" * 32), hub.expect("c" * 32)
    hub.forget("c" * 32)
    assert dropped.cancelled() and not lost.done()
    hub._release_fences()  # what HistoryLost does: none of them can be told apart
    assert lost.result() == frozenset() and hub._fences == {}
