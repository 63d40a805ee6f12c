"""Client writes end to end: a real gateway, real websockets, real databases.

Each test checks what the writer receives (``ack``, the ``tx`` of its own change, then
``fence``), what other clients receive, and what the database holds.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
from sqlalchemy.orm import Session

from livesync import Conflict, Context, Forbidden, Invalid, LiveSync, NotFound
from tests.conftest import make_live, published
from tests.gateway_support import TIMEOUT, Client, connected, running_gateway
from tests.models import Item, Todo
from tests.write_support import allow_todos, assert_untouched, new_id, snapshot, todo_publication

Gateway = tuple[LiveSync, int]


def setup(live: LiveSync) -> LiveSync:
    """Todos writable by their owners; the identity is the ``x-user`` header (default 1)."""

    @live.authenticate
    def by_header(token: str | None, request: Any) -> int:
        return int(request.headers.get("x-user", "1"))

    live.collection(Todo, exclude=["note"])
    live.collection(Item)  # live, readable by nobody, writable by nobody
    allow_todos(live)
    todo_publication(live)

    @live.method("add_item")
    def add_item(
        ctx: Context, session: Session, title: str, qty: int = 0, pause: float = 0.0
    ) -> dict[str, Any]:
        item = Item(title=title, qty=qty)
        session.add(item)
        session.flush()
        time.sleep(pause)  # to have it still running when a duplicate arrives
        return {"id": item.id, "who": ctx.identity}

    @live.method("fail")
    def fail(ctx: Context, session: Session, how: str) -> None:
        session.add(Item(title="rolled back"))
        session.flush()
        if how == "forbidden":
            raise Forbidden("admins only")
        if how == "conflict":
            raise Conflict("already archived")
        if how == "not-found":
            raise NotFound("no such project")
        if how == "invalid":
            raise Invalid("bad dates", fields={"end": "before start"})
        raise RuntimeError("database password is hunter2")

    @live.method("nap")
    def nap(ctx: Context, session: Session, seconds: float = 0.0) -> str:
        time.sleep(seconds)
        return "rested"

    return live


@pytest.fixture
async def gateway(database_url: str) -> AsyncIterator[Gateway]:
    live = setup(make_live(database_url, ping_interval=30.0))
    async with running_gateway(live) as port:
        yield live, port
    live.close()


@pytest.fixture(params=["memory", "redis"])
def broker_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The fence over both brokers; Redis publishes from a background thread."""
    if request.param == "memory":
        yield None
        return
    yield request.getfixturevalue("redis_url")


def todo(owner: int = 1, **fields: Any) -> dict[str, Any]:
    return {"id": new_id(), "owner_id": owner, "title": "from the wire", **fields}


def kinds(messages: list[dict[str, Any]]) -> list[str]:
    return [m["type"] for m in messages]


def tx_changes(message: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["op"], c["id"]) for part in message["parts"] for c in part["ch"]]


def received_changes(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [change for m in messages if m["type"] == "tx" for change in tx_changes(m)]


def the(kind: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [m for m in messages if m["type"] == kind]
    return found


async def silent(client: Client, seconds: float = 0.3) -> bool:
    """True if nothing but pings arrives within ``seconds``."""
    try:
        while True:
            message = await asyncio.wait_for(client.recv(), seconds)
            if message["type"] != "ping":
                return False
    except TimeoutError:
        return True


def get(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=TIMEOUT) as response:
        return orjson.loads(response.read())


# --------------------------------------------------------------------------- ack and fence
async def test_ack_then_fence_after_the_writes_own_tx(
    database_url: str, broker_url: str | None, unique_topic: str
) -> None:
    live = setup(make_live(database_url, broker_url, topic=unique_topic, ping_interval=30.0))
    try:
        async with (
            running_gateway(live) as port,
            connected(port) as writer,
            connected(port) as bystander,
        ):
            await writer.subscribe("mine", "todos")
            await bystander.subscribe("all", "todos")
            doc = todo()
            await writer.send(type="insert", id="w1", c="t_todos", d=doc)
            seen = await writer.until("fence", "w1")
            ack = the("ack", seen)
            assert ack == {"type": "ack", "id": "w1", "ok": True, "doc": doc["id"], "v": 1}
            # The writer's own change arrives on its subscription before the fence.
            assert received_changes(seen) == [("put", doc["id"])]
            assert kinds(seen).index("ack") < kinds(seen).index("fence")
            assert kinds(seen).index("tx") < kinds(seen).index("fence")
            tx = await bystander.recv_type("tx")
            assert tx_changes(tx) == [("put", doc["id"])]
            assert tx["parts"][0]["ch"][0]["d"]["created"] == "born"

            # An update: the patch is the server's, from the version the client held.
            await writer.send(
                type="update", id="w2", c="t_todos", doc=doc["id"], v=1, set={"done": True}
            )
            seen = await writer.until("fence", "w2")
            (change,) = [c for m in seen if m["type"] == "tx" for p in m["parts"] for c in p["ch"]]
            assert (change["op"], change["pv"], change["v"]) == ("patch", 1, 2)
            assert change["p"] == [{"op": "replace", "path": "/done", "value": True}]
            assert received_changes([await bystander.recv_type("tx")]) == [("patch", doc["id"])]
    finally:
        live.close()


async def test_the_fence_waits_for_requeried_subscriptions(gateway: Gateway) -> None:
    _, port = gateway
    async with connected(port) as writer:
        await writer.subscribe("q", "todos_requery")  # re-run by the database, debounced
        doc = todo()
        await writer.send(type="insert", id="w1", c="t_todos", d=doc)
        seen = await writer.until("fence", "w1")
        assert received_changes(seen) == [("put", doc["id"])]
        assert kinds(seen)[-1] == "fence"


async def test_the_fence_waits_for_a_subscription_still_starting(gateway: Gateway) -> None:
    live, port = gateway
    hub = live.app.ctx.gateway.hub
    real_read = hub._read

    def slow_read(query: Any) -> Any:
        rows = real_read(query)  # a snapshot taken before the write commits...
        time.sleep(0.5)  # ...and sent late: the write's tx is held until ready
        return rows

    hub._read = slow_read
    async with connected(port) as writer:
        await writer.send(type="sub", id="late", pub="todos")
        await asyncio.sleep(0.1)
        doc = todo()
        await writer.send(type="insert", id="w1", c="t_todos", d=doc)
        seen = await writer.until("fence", "w1")
    order = kinds(seen)
    assert order.index("ready") < order.index("fence")
    assert received_changes(seen) == [("put", doc["id"])]
    assert order.index("tx") < order.index("fence")


async def test_a_write_that_changes_nothing_is_fenced_at_once(gateway: Gateway) -> None:
    _, port = gateway
    async with connected(port) as writer:
        await writer.subscribe("mine", "todos")
        doc = todo(title="same")
        await writer.send(type="insert", id="w1", c="t_todos", d=doc)
        await writer.until("fence", "w1")
        await writer.send(
            type="update", id="w2", c="t_todos", doc=doc["id"], v=1, set={"title": "same"}
        )
        seen = await writer.until("fence", "w2")
        assert kinds(seen) == ["ack", "fence"]
        assert seen[0]["v"] == 1


# --------------------------------------------------------------------------- rejections
async def test_rejected_writes_reach_nobody_and_keep_the_connection(gateway: Gateway) -> None:
    live, port = gateway
    async with connected(port) as writer, connected(port) as bystander:
        await writer.subscribe("mine", "todos")
        await bystander.subscribe("all", "todos")
        existing = todo()
        await writer.send(type="insert", id="w0", c="t_todos", d=existing)
        await writer.until("fence", "w0")
        await bystander.recv_type("tx")
        before = await asyncio.to_thread(snapshot, live)
        attempts: list[tuple[dict[str, Any], str]] = [
            ({"type": "insert", "c": "t_todos", "d": todo(owner=2)}, "forbidden"),
            ({"type": "insert", "c": "t_todos", "d": todo(title="")}, "invalid"),
            ({"type": "insert", "c": "t_todos", "d": existing}, "conflict"),
            ({"type": "insert", "c": "t_items", "d": {"title": "x"}}, "forbidden"),
            (
                {"type": "update", "c": "t_todos", "doc": existing["id"], "v": 7, "set": {}},
                "conflict",
            ),
            ({"type": "update", "c": "t_todos", "doc": new_id(), "v": 1, "set": {}}, "not-found"),
            (
                {
                    "type": "update",
                    "c": "t_todos",
                    "doc": existing["id"],
                    "v": 1,
                    "patch": [{"op": "test", "path": "/title", "value": "other"}],
                },
                "invalid",
            ),
            ({"type": "remove", "c": "t_todos", "doc": existing["id"]}, "invalid"),  # no v
        ]
        for number, (attempt, code) in enumerate(attempts):
            await writer.send(id=f"bad{number}", **attempt)
            (ack,) = await writer.until("ack", f"bad{number}")  # nothing else came first
            assert (ack["ok"], ack["code"]) == (False, code), attempt
        await asyncio.to_thread(assert_untouched, live, before)
        assert await silent(bystander)
        # Still usable: the next write goes through, and it is all anyone sees.
        doc = todo()
        await writer.send(type="insert", id="good", c="t_todos", d=doc)
        seen = await writer.until("fence", "good")
        assert received_changes(seen) == [("put", doc["id"])]
        assert [m for m in seen if m["type"] == "fence"] == [{"type": "fence", "id": "good"}]
        assert tx_changes(await bystander.recv_type("tx")) == [("put", doc["id"])]


async def test_malformed_writes_are_protocol_errors(gateway: Gateway) -> None:
    _, port = gateway
    async with connected(port) as client:
        for bad in [
            {"type": "insert", "id": "m1", "c": "t_todos"},  # no d
            {"type": "update", "id": "m2", "c": "t_todos", "doc": "x", "set": {}, "patch": []},
            {"type": "update", "id": "m3", "c": "t_todos", "doc": "x", "patch": [{"op": "add"}]},
            {"type": "call", "id": "", "m": "nap"},
        ]:
            await client.send(**bad)
            error = await client.recv_type("error")
            assert error["code"] == "invalid-message", bad
        await client.send(type="call", id="ok", m="nap")
        assert (await client.recv_type("ack"))["result"] == "rested"


# --------------------------------------------------------------------------- idempotency
async def test_a_write_resent_after_a_reconnect_is_applied_once(gateway: Gateway) -> None:
    live, port = gateway
    doc = todo()
    write = {"type": "insert", "id": "w1", "c": "t_todos", "d": doc}
    async with connected(port) as bystander:
        await bystander.subscribe("all", "todos")
        async with connected(port, client_id="client-0001") as first:
            await first.send(**write)
            ack = the("ack", await first.until("fence", "w1"))
        # The client did not see the ack (say), reconnects and resends: the same answer.
        async with connected(port, client_id="client-0001") as again:
            await again.send(**write)
            seen = await again.until("fence", "w1")
            assert the("ack", seen) == ack
            assert kinds(seen) == ["ack", "fence"]
        # Without the same client id it is a new request: here, a conflict.
        async with connected(port, client_id="client-0002") as other:
            await other.send(**write)
            assert (await other.recv_type("ack"))["code"] == "conflict"
        assert tx_changes(await bystander.recv_type("tx")) == [("put", doc["id"])]
        assert await silent(bystander)
    assert len(await asyncio.to_thread(published, live)) == 1


async def test_a_write_cut_off_mid_flight_is_answered_on_another_gateway(
    gateway: Gateway, database_url: str
) -> None:
    live, port = gateway
    other = setup(LiveSync(database_url, live.settings.broker_url, ping_interval=30.0))
    call = {"type": "call", "id": "c1", "m": "add_item", "params": {"title": "once", "pause": 0.4}}
    try:
        async with running_gateway(other) as other_port:
            async with connected(port, client_id="client-0003") as first:
                await first.send(**call)
                await asyncio.sleep(0.1)  # running now; the connection drops before the ack
            async with connected(other_port, client_id="client-0003") as again:
                await again.send(**call)  # a duplicate, while the first is still running
                seen = await again.until("fence", "c1")
            assert the("ack", seen) == {
                "type": "ack",
                "id": "c1",
                "ok": True,
                "result": {"id": 1, "who": 1},
            }
            with Session(live.engine) as s:
                assert [i.title for i in s.query(Item)] == ["once"]
            assert len(await asyncio.to_thread(published, live)) == 1
    finally:
        other.close()


# --------------------------------------------------------------------------- methods
async def test_methods_over_the_wire(gateway: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    live, port = gateway
    async with connected(port) as client:
        await client.send(type="call", id="c1", m="add_item", params={"title": "t", "qty": "2"})
        seen = await client.until("fence", "c1")
        result = {"id": 1, "who": 1}
        assert the("ack", seen) == {"type": "ack", "id": "c1", "ok": True, "result": result}
        await client.send(type="call", id="c2", m="add_item", params={"qty": "lots"})
        ack = await client.recv_type("ack")
        assert ack["code"] == "invalid"
        assert {f["path"] for f in ack["fields"]} == {"/title", "/qty"}
        await client.send(type="call", id="c3", m="missing", params={})
        assert (await client.recv_type("ack"))["code"] == "not-found"
        for how in ("forbidden", "conflict", "not-found", "invalid"):
            await client.send(type="call", id=f"f-{how}", m="fail", params={"how": how})
            ack = await client.recv_type("ack")
            assert (ack["id"], ack["code"]) == (f"f-{how}", how)
        assert ack["fields"] == [{"path": "/end", "message": "before start"}]
        with caplog.at_level(logging.ERROR, logger="livesync"):
            await client.send(type="call", id="f-bug", m="fail", params={"how": "bug"})
            raw = await asyncio.wait_for(client.ws.recv(), TIMEOUT)
        assert orjson.loads(raw) == {
            "type": "ack",
            "id": "f-bug",
            "ok": False,
            "code": "internal",
            "message": "internal error",
        }
        assert "hunter2" not in raw and "Traceback" not in raw
        (record,) = [r for r in caplog.records if "f-bug" in r.getMessage()]
        assert record.exc_info is not None and "hunter2" in str(record.exc_info[1])
        assert await silent(client)  # no fence for a rejection
    with Session(live.engine) as s:
        assert [i.title for i in s.query(Item)] == ["t"]  # every failed call rolled back


async def test_the_identity_reaches_methods_and_rules(database_url: str) -> None:
    live = setup(make_live(database_url, ping_interval=30.0))
    try:
        async with running_gateway(live) as port, connected(port, **{"x-user": "2"}) as bob:
            await bob.send(type="call", id="c1", m="add_item", params={"title": "t"})
            ack = the("ack", await bob.until("fence", "c1"))
            assert ack["result"] == {"id": 1, "who": 2}
            await bob.send(type="insert", id="w1", c="t_todos", d=todo(owner=1))
            assert (await bob.recv_type("ack"))["code"] == "forbidden"
            await bob.send(type="insert", id="w2", c="t_todos", d=todo(owner=2))
            assert the("ack", await bob.until("fence", "w2"))["ok"] is True
    finally:
        live.close()


# --------------------------------------------------------------------------- limits
async def test_writes_are_rate_limited_per_connection(database_url: str) -> None:
    live = setup(make_live(database_url, write_rate_per_second=1, write_rate_burst=2))
    try:
        async with running_gateway(live) as port, connected(port) as client:
            for n in range(5):
                await client.send(type="call", id=f"c{n}", m="nap")
            acks: dict[str, dict[str, Any]] = {}
            fences: set[str] = set()
            while len(acks) < 5 or fences != {"c0", "c1"}:
                message = await client.recv()
                if message["type"] == "ack":
                    acks[message["id"]] = message
                elif message["type"] == "fence":
                    fences.add(message["id"])
            assert [acks[f"c{n}"].get("code", "ok") for n in range(5)] == [
                "ok",
                "ok",
                "rate-limited",
                "rate-limited",
                "rate-limited",
            ]
            await asyncio.sleep(1.1)  # the bucket refills
            await client.send(type="call", id="later", m="nap")
            assert kinds(await client.until("fence", "later")) == ["ack", "fence"]
            await client.send(type="ping", id=1)  # other messages were never limited
            assert await client.recv_type("pong") == {"type": "pong", "id": 1}
    finally:
        live.close()


async def test_a_connection_has_a_bounded_write_queue(database_url: str) -> None:
    live = setup(make_live(database_url, write_rate_per_second=100, write_rate_burst=3))
    try:
        async with running_gateway(live) as port, connected(port) as client:
            for n in range(3):
                await client.send(type="call", id=f"a{n}", m="nap", params={"seconds": 0.5})
            await asyncio.sleep(0.05)  # the bucket refills; one runs, two wait
            for n in range(3):
                await client.send(type="call", id=f"b{n}", m="nap", params={"seconds": 0.5})
            refused = await client.recv_type("ack")
            assert (refused["id"], refused["code"]) == ("b1", "rate-limited")
            assert refused["message"] == "too many writes waiting"
            assert (await client.recv_type("ack"))["id"] == "b2"
            order = []
            while len(order) < 4:
                message = await asyncio.wait_for(client.recv(), 10)
                if message["type"] == "ack":
                    order.append(message["id"])
            assert order == ["a0", "a1", "a2", "b0"]  # one at a time, in arrival order
    finally:
        live.close()


# --------------------------------------------------------------------------- schemas
async def test_schemas_are_served_for_writable_collections_only(gateway: Gateway) -> None:
    live, port = gateway
    body = await asyncio.to_thread(get, port, "/live/schemas")
    assert set(body) == {"t_todos"}  # t_items is live but not writable
    assert body["t_todos"] == orjson.loads(orjson.dumps(live.writable["t_todos"].describe()))
    assert body["t_todos"]["ops"] == ["insert", "update", "remove"]
    assert body["t_todos"]["schema"]["required"] == ["id", "owner_id", "title"]
