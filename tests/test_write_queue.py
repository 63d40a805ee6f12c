"""Queue mode in one process: a real gateway with ``writes="queue"``, workers as asyncio tasks,
real PostgreSQL and Redis.

The same acks and fences as inline mode, and the queue's own paths: a request no worker
takes is withdrawn, a request a dead worker held is claimed, a request whose worker died
after COMMIT is answered from its stored ack (applied once), a graceful stop finishes the
running requests. ``tests/test_worker_processes.py`` restarts real worker processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
from sqlalchemy import func, select

from livesync import Context, LiveSync, QueueModeError, Worker
from livesync.cli import load_app, main
from livesync.dispatch import Outcome
from livesync.server.queue import WriteQueue
from livesync.workqueue import GROUP, QueueKeys, Reply, Request
from tests.conftest import make_live, published
from tests.gateway_support import TIMEOUT, connected, running_gateway
from tests.models import Item, Todo
from tests.test_gateway_writes import kinds, received_changes, setup, the, todo
from tests.write_support import assert_untouched, message, snapshot

pytestmark = pytest.mark.redis


def queued_live(postgres_url: str, redis_url: str, topic: str, **options: Any) -> LiveSync:
    return setup(
        make_live(
            postgres_url, redis_url, topic=topic, writes="queue", ping_interval=30.0, **options
        )
    )


@contextlib.asynccontextmanager
async def working(live: LiveSync, **options: Any) -> AsyncIterator[Worker]:
    """A worker running in this event loop until the block ends (stopped gracefully)."""
    worker = Worker(live, poll=0.2, **options)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.started.wait(), TIMEOUT)
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, TIMEOUT)


@pytest.fixture
def queued(postgres_url: str, redis_url: str, unique_topic: str) -> Iterator[LiveSync]:
    live = queued_live(postgres_url, redis_url, unique_topic)
    yield live
    live.close()


def entries(live: LiveSync) -> int:
    """Requests still on the queue's stream."""
    client = redis.Redis.from_url(live.settings.broker_url)
    try:
        return int(client.xlen(QueueKeys(live.settings.topic).stream))
    finally:
        client.close()


def metrics_of(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=TIMEOUT) as response:
        body: bytes = response.read()
        return body.decode()


def items(live: LiveSync) -> list[str]:
    with live.engine.connect() as conn:
        return list(conn.execute(select(Item.title).order_by(Item.id)).scalars())


# --------------------------------------------------------------------------- configuration
def test_queue_mode_needs_redis(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(QueueModeError, match="needs a Redis broker"):
        LiveSync(f"sqlite:///{tmp_path / 'q.db'}", "memory://queue-mode", writes="queue")
    inline = LiveSync(f"sqlite:///{tmp_path / 'q.db'}", "memory://queue-mode")
    try:
        with pytest.raises(QueueModeError, match="LIVESYNC_BROKER_URL=redis://"):
            Worker(inline)
    finally:
        inline.close()
    module = tmp_path / "memory_app.py"
    module.write_text(
        f"from livesync import LiveSync\nlive = LiveSync({f'sqlite:///{tmp_path}/m.db'!r})\n"
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        patch.delenv("LIVESYNC_BROKER_URL", raising=False)
        with pytest.raises(SystemExit, match="needs a Redis broker"):
            main(["worker", "memory_app:live"])
        patch.setenv("LIVESYNC_WRITES", "inline")  # restored afterwards; load_app sets it
        with pytest.raises(SystemExit, match="needs a Redis broker"):
            load_app("memory_app:live", writes="queue")
        patch.delitem(sys.modules, "memory_app")
        with pytest.raises(SystemExit, match="needs a Redis broker"):
            load_app("memory_app:live", writes="queue")  # failing at import this time


def test_a_request_survives_the_queue_unchanged() -> None:
    update = message(
        type="update", id="w1", c="t_todos", doc="x", v=2,
        patch=[{"op": "add", "path": "/a", "value": None},
               {"op": "move", "from": "/a", "path": "/b"}],
    )  # fmt: skip
    request = Request("gw", "client-1", "s1", {"user": 7, "roles": ["a"]}, "c" * 32, update)
    again = Request.decode(request.encode())
    assert again.message == update
    assert again.context.identity == {"user": 7, "roles": ["a"]}
    assert (again.client, again.session, again.changeset) == ("client-1", "s1", "c" * 32)
    with pytest.raises(TypeError, match="does not survive JSON"):
        Request("gw", "c", "s", (1, 2), "c" * 32, update).encode()
    reply = Reply("c" * 32, {"id": "w1", "ok": True}, changed=True)
    assert Reply.decode(reply.encode()) == reply


# --------------------------------------------------------------------------- end to end
async def test_acks_and_fences_as_in_inline_mode(queued: LiveSync) -> None:
    async with (
        working(queued),
        running_gateway(queued) as port,
        connected(port) as writer,
        connected(port) as bystander,
    ):
        await writer.subscribe("mine", "todos")
        await bystander.subscribe("all", "todos")
        doc = todo()
        await writer.send(type="insert", id="w1", c="t_todos", d=doc)
        seen = await writer.until("fence", "w1")
        assert the("ack", seen) == {"type": "ack", "id": "w1", "ok": True, "doc": doc["id"], "v": 1}
        assert received_changes(seen) == [("put", doc["id"])]
        assert kinds(seen).index("tx") < kinds(seen).index("fence")
        assert received_changes([await bystander.recv_type("tx")]) == [("put", doc["id"])]

        before = await asyncio.to_thread(snapshot, queued)
        await writer.send(type="insert", id="w2", c="t_todos", d=todo(owner=2))
        rejected = await writer.recv_type("ack")
        assert (rejected["id"], rejected["code"]) == ("w2", "forbidden")
        await writer.send(type="call", id="c1", m="fail", params={"how": "boom"})
        assert (await writer.recv_type("ack"))["code"] == "internal"
        await asyncio.to_thread(assert_untouched, queued, before)

        await writer.send(type="call", id="c2", m="add_item", params={"title": "t"})
        assert the("ack", await writer.until("fence", "c2"))["result"]["who"] == 1
    assert await asyncio.to_thread(entries, queued) == 0


async def test_the_identity_reaches_the_worker(queued: LiveSync) -> None:
    async with (
        working(queued),
        running_gateway(queued) as port,
        connected(port, **{"x-user": "2"}) as bob,
    ):
        await bob.send(type="call", id="c1", m="add_item", params={"title": "t"})
        assert the("ack", await bob.until("fence", "c1"))["result"] == {"id": 1, "who": 2}
        await bob.send(type="insert", id="w1", c="t_todos", d=todo(owner=1))
        assert (await bob.recv_type("ack"))["code"] == "forbidden"


async def test_a_resent_write_is_applied_once(queued: LiveSync) -> None:
    write = {"type": "insert", "id": "w1", "c": "t_todos", "d": todo()}
    async with working(queued), running_gateway(queued) as port:
        async with connected(port, client_id="client-0001") as first:
            await first.send(**write)
            ack = the("ack", await first.until("fence", "w1"))
        async with connected(port, client_id="client-0001") as again:
            await again.send(**write)
            seen = await again.until("fence", "w1")
            assert the("ack", seen) == ack and kinds(seen) == ["ack", "fence"]
    assert len(await asyncio.to_thread(published, queued)) == 1


async def test_an_identity_that_is_not_json_is_refused(
    postgres_url: str, redis_url: str, unique_topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    live = queued_live(postgres_url, redis_url, unique_topic)
    live.authenticate(lambda token, request: {1, 2})
    try:
        async with working(live), running_gateway(live) as port, connected(port) as client:
            await client.send(type="call", id="c1", m="nap")
            ack = await client.recv_type("ack")
            assert (ack["code"], ack["message"]) == ("internal", "internal error")
        assert "does not survive JSON" in caplog.text
    finally:
        live.close()


# --------------------------------------------------------------------------- no worker
async def test_a_request_no_worker_takes_is_withdrawn(
    postgres_url: str, redis_url: str, unique_topic: str
) -> None:
    live = queued_live(postgres_url, redis_url, unique_topic, write_queue_timeout=0.5)
    try:
        async with running_gateway(live) as port, connected(port) as client:
            await client.send(type="call", id="c1", m="add_item", params={"title": "late"})
            ack = await client.recv_type("ack")
            assert ack == {
                "type": "ack",
                "id": "c1",
                "ok": False,
                "code": "internal",
                "message": "no write worker took the request in time; it was not run",
            }
            assert await asyncio.to_thread(entries, live) == 0
            metrics = await asyncio.to_thread(metrics_of, port)
            assert "livesync_write_queue_withdrawn_total 1\n" in metrics
            async with working(live) as worker:  # a worker arriving later runs nothing
                await asyncio.sleep(0.5)
                assert worker.processed == 0
            # ... and the connection's next write goes through.
            async with working(live):
                await client.send(type="call", id="c2", m="add_item", params={"title": "now"})
                assert the("ack", await client.until("fence", "c2"))["ok"] is True
        assert await asyncio.to_thread(items, live) == ["now"]
    finally:
        live.close()


async def ghost_takes(live: LiveSync) -> tuple[str, Request]:
    """A worker that reads one request and dies before answering it (never acks)."""
    client = redis.asyncio.Redis.from_url(live.settings.broker_url)
    stream = QueueKeys(live.settings.topic).stream
    try:
        for _ in range(int(TIMEOUT * 20)):
            found: Any = await client.xreadgroup(GROUP, "ghost", {stream: ">"}, count=1, block=50)
            if found:
                entry_id, fields = found[0][1][0]
                return entry_id.decode(), Request.decode(fields[b"d"])
        raise AssertionError("no request was queued")
    finally:
        await client.aclose()


async def test_a_request_held_by_a_dead_worker_is_claimed(
    postgres_url: str, redis_url: str, unique_topic: str
) -> None:
    live = queued_live(postgres_url, redis_url, unique_topic, write_queue_timeout=0.3)
    try:
        async with running_gateway(live) as port, connected(port) as client:
            await client.send(type="call", id="c1", m="add_item", params={"title": "once"})
            await ghost_takes(live)
            # Taken, so not withdrawn: the gateway keeps waiting past the queue timeout.
            await asyncio.sleep(1.0)
            assert await asyncio.to_thread(items, live) == []
            async with working(live, claim_idle=0.5) as worker:
                seen = await client.until("fence", "c1")
                assert the("ack", seen)["result"] == {"id": 1, "who": 1}
                assert worker.claimed == 1
        assert await asyncio.to_thread(items, live) == ["once"]
        assert await asyncio.to_thread(entries, live) == 0
    finally:
        live.close()


async def test_a_worker_that_died_after_commit_is_answered_from_the_stored_ack(
    postgres_url: str, redis_url: str, unique_topic: str
) -> None:
    live = queued_live(postgres_url, redis_url, unique_topic)
    try:
        async with running_gateway(live) as port, connected(port) as client:
            await client.subscribe("all", "todos")
            doc = todo()
            await client.send(type="insert", id="w1", c="t_todos", d=doc)
            _, request = await ghost_takes(live)
            # The ghost commits the write (and its change set), then dies unanswered.
            first = await asyncio.to_thread(
                live.execute,
                request.context,
                request.message,
                client=request.client,
                changeset_id=request.changeset,
            )
            assert first.ok and first.changed
            async with working(live, claim_idle=0.3) as worker:
                seen = await client.until("fence", "w1")
                assert worker.claimed == 1
            assert the("ack", seen) == {"type": "ack", **first.ack}
            # The fence waited for the first attempt's change set: the tx came first.
            assert received_changes(seen) == [("put", doc["id"])]
        with live.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(Todo)).scalar_one() == 1
        assert len(await asyncio.to_thread(published, live)) == 1
    finally:
        live.close()


async def test_a_request_every_worker_died_on_is_dropped(
    postgres_url: str, redis_url: str, unique_topic: str
) -> None:
    live = queued_live(postgres_url, redis_url, unique_topic)
    try:
        async with running_gateway(live) as port, connected(port) as client:
            await client.send(type="call", id="c1", m="add_item", params={"title": "poison"})
            await ghost_takes(live)
            async with working(live, claim_idle=0.2, max_deliveries=1):
                ack = await client.recv_type("ack")
            assert (ack["id"], ack["code"]) == ("c1", "internal")
        assert await asyncio.to_thread(items, live) == []
        assert await asyncio.to_thread(entries, live) == 0
    finally:
        live.close()


async def test_a_long_request_is_not_claimed_while_its_worker_beats(queued: LiveSync) -> None:
    async with (
        running_gateway(queued) as port,
        connected(port) as client,
        working(queued, claim_idle=0.3) as first,
        working(queued, claim_idle=0.3) as second,
    ):
        await client.send(type="call", id="c1", m="add_item", params={"title": "t", "pause": 1.2})
        assert the("ack", await client.until("fence", "c1"))["ok"] is True
        assert (first.processed + second.processed, first.claimed + second.claimed) == (1, 0)
    assert await asyncio.to_thread(items, queued) == ["t"]


async def test_a_graceful_stop_finishes_the_running_request(queued: LiveSync) -> None:
    async with running_gateway(queued) as port, connected(port) as client:
        worker = Worker(queued, poll=0.2)
        task = asyncio.create_task(worker.run())
        await client.send(type="call", id="c1", m="nap", params={"seconds": 0.6})
        await asyncio.sleep(0.3)  # running now
        worker.stop()
        seen = await client.until("fence", "c1")
        assert the("ack", seen)["result"] == "rested"
        await asyncio.wait_for(task, TIMEOUT)
        assert worker.processed == 1
    # It left the group: nothing pending anywhere.
    client_ = redis.Redis.from_url(queued.settings.broker_url)
    try:
        consumers = client_.xinfo_consumers(QueueKeys(queued.settings.topic).stream, GROUP)
        assert [c["name"] for c in consumers] == []
    finally:
        client_.close()


async def test_the_gateway_side_alone(queued: LiveSync) -> None:
    """WriteQueue without a gateway: the executor contract ConnectionWrites relies on."""
    queue = WriteQueue(queued, gateway=f"test-{uuid.uuid4().hex[:6]}")
    await queue.start()
    try:
        async with working(queued):
            outcome = await queue.execute(
                Context(1, "session-1"),
                message(type="call", id="c1", m="nap"),
                "client-9",
                uuid.uuid4().hex,
            )
        assert outcome == Outcome({"id": "c1", "ok": True, "result": "rested"})
        assert queue.waiting == 0
    finally:
        await queue.stop()


async def test_a_request_redis_lost_is_answered_internal(queued: LiveSync) -> None:
    """Neither queued nor pending, and no answer: the outcome is unknown; ``internal``."""
    queue = WriteQueue(queued, gateway=f"test-{uuid.uuid4().hex[:6]}", timeout=0.3)
    await queue.start()
    stream = QueueKeys(queued.settings.topic).stream
    client = redis.asyncio.Redis.from_url(queued.settings.broker_url)
    try:
        call = message(type="call", id="c1", m="nap")
        running = asyncio.create_task(
            queue.execute(Context(1, "s"), call, "client-9", uuid.uuid4().hex)
        )
        while not (found := await client.xrange(stream)):
            await asyncio.sleep(0.01)
        await client.xdel(stream, found[0][0])  # lost, as in a Redis restart
        outcome = await asyncio.wait_for(running, TIMEOUT)
        assert outcome.ack == {
            "id": "c1",
            "ok": False,
            "code": "internal",
            "message": "internal error",
        }
    finally:
        await client.aclose()
        await queue.stop()
