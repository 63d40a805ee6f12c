"""Worker mode with real processes: ``livesync serve --writes queue`` and ``livesync worker``
on PostgreSQL + Redis.

The upgrade test restarts every worker (one killed with SIGKILL in the middle of a
request, one stopped with SIGTERM) while clients keep writing: no websocket connection
drops, every write is acked exactly once and fenced, the database holds each accepted
write once, and a subscriber's copy equals the database.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from sqlalchemy import text

from livesync import LiveSync
from livesync.workqueue import GROUP, QueueKeys
from tests.conftest import make_live
from tests.gateway_support import TIMEOUT, Client, connected
from tests.test_gateway_processes import ROOT, Gateway

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.postgres]


class WorkerProcess:
    """One ``livesync worker`` process; its output is collected in the background."""

    def __init__(self, env: dict[str, str], name: str) -> None:
        self.name = name
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "livesync.cli", "worker", "tests.queue_app:live",
             "--name", name, "--concurrency", "2"],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(6 * TIMEOUT):
            self.process.kill()
            raise AssertionError(f"worker {name} did not start: {self.output()}")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode(errors="replace")
            self.lines.append(line)
            if "running writes" in line:
                self._ready.set()

    def output(self) -> str:
        return "".join(self.lines)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        self._reader.join(5)
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.terminate()
        self._reader.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def cluster(
    postgres_url: str, redis_url: str, unique_topic: str
) -> Iterator[tuple[LiveSync, dict[str, str], list[Any]]]:
    live = make_live(postgres_url, redis_url, topic=unique_topic)
    env = {
        "LIVESYNC_DATABASE_URL": postgres_url,
        "LIVESYNC_BROKER_URL": redis_url,
        "LIVESYNC_TOPIC": unique_topic,
        "LIVESYNC_WORKER_CLAIM_IDLE": "1.0",
        "LIVESYNC_WRITE_QUEUE_TIMEOUT": "30",
        "LIVESYNC_OUTBOX_GRACE": "1.0",
    }
    started: list[Any] = []
    try:
        yield live, env, started
    finally:
        for process in reversed(started):
            process.stop()
        live.close()


def pending_of(live: LiveSync, consumer: str) -> int:
    client = redis.Redis.from_url(live.settings.broker_url)
    try:
        for found in client.xinfo_consumers(QueueKeys(live.settings.topic).stream, GROUP):
            if found["name"].decode() == consumer:
                return int(found["pending"])
        return 0
    finally:
        client.close()


def queue_state(live: LiveSync) -> tuple[int, int]:
    """(entries on the stream, entries pending in the group)."""
    client = redis.Redis.from_url(live.settings.broker_url)
    try:
        stream = QueueKeys(live.settings.topic).stream
        return int(client.xlen(stream)), int(client.xpending(stream, GROUP)["pending"])
    finally:
        client.close()


class Writer:
    """One client writing without pause: todo inserts and ``add_item`` calls, one at a time."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.acks: collections.Counter[str] = collections.Counter()
        self.fences: collections.Counter[str] = collections.Counter()
        self.answers: dict[str, dict[str, Any]] = {}

    async def run(self, client: Client, stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            request = f"w{self.number}-{n}"
            if n % 2:
                doc = {"id": str(uuid.uuid4()), "owner_id": self.number, "title": request}
                message: dict[str, Any] = {
                    "type": "insert",
                    "id": request,
                    "c": "t_todos",
                    "d": doc,
                }
            else:
                params = {"title": request, "pause": 0.3 if n % 4 == 0 else 0.02}
                message = {"type": "call", "id": request, "m": "add_item", "params": params}
            self.sent.append((request, message))
            await client.send(**message)
            while request not in self.answers:
                self.record(await self.receive(client))
        # Every accepted write gets its fence, even those whose worker died.
        while any(self.fences[r] == 0 for r, a in self.answers.items() if a["ok"]):
            self.record(await self.receive(client))

    async def receive(self, client: Client) -> dict[str, Any]:
        while True:
            message = await asyncio.wait_for(client.recv(), 30)
            if message["type"] in ("ack", "fence"):
                return message

    def record(self, message: dict[str, Any]) -> None:
        if message["type"] == "ack":
            self.acks[message["id"]] += 1
            self.answers[message["id"]] = message
        else:
            self.fences[message["id"]] += 1


async def drain(client: Client) -> set[str]:
    """The ids of every document put by the ``tx`` frames received until a quiet second."""
    ids: set[str] = set()
    while True:
        try:
            message = await asyncio.wait_for(client.recv(), 1.0)
        except TimeoutError:
            return ids
        if message["type"] == "tx":
            ids |= {c["id"] for p in message["parts"] for c in p["ch"] if c["op"] == "put"}


async def test_restarting_every_worker_drops_nothing(cluster: Any) -> None:
    live, env, started = cluster

    def worker(name: str) -> WorkerProcess:
        process = WorkerProcess(env, name)
        started.append(process)
        return process

    gateway = Gateway(env, "tests.queue_app:live", "--writes", "queue")
    started.append(gateway)
    first, second = worker("first"), worker("second")
    writers = [Writer(n) for n in range(1, 5)]
    stop = asyncio.Event()
    async with (
        connected(gateway.port, client_id="writer-0001") as c1,
        connected(gateway.port, client_id="writer-0002") as c2,
        connected(gateway.port, client_id="writer-0003") as c3,
        connected(gateway.port, client_id="writer-0004") as c4,
        connected(gateway.port) as watcher,
    ):
        clients = [c1, c2, c3, c4]
        await watcher.subscribe("todos", "t_todos")
        tasks = [asyncio.create_task(w.run(c, stop)) for w, c in zip(writers, clients, strict=True)]
        await asyncio.sleep(1.5)

        # SIGKILL one worker while it holds requests, start a replacement.
        deadline = time.monotonic() + 10
        while await asyncio.to_thread(pending_of, live, "first") == 0:
            assert time.monotonic() < deadline, "the first worker never held a request"
            await asyncio.sleep(0.01)
        await asyncio.to_thread(first.kill)
        worker("third")
        await asyncio.sleep(1.0)

        # SIGTERM the other (it finishes what it runs), start another.
        assert await asyncio.to_thread(second.terminate) == 0, second.output()
        worker("fourth")
        await asyncio.sleep(2.0)

        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        for client in clients:
            assert client.ws.close_code is None  # no connection dropped

        # Nothing more arrives: no write was answered twice.
        await asyncio.sleep(1.5)
        for writer, client in zip(writers, clients, strict=True):
            with pytest.raises(TimeoutError):
                while True:
                    writer.record(await asyncio.wait_for(writer.receive(client), 0.2))
        watched = await drain(watcher)

    sent = [request for writer in writers for request, _ in writer.sent]
    acks = sum((writer.acks for writer in writers), collections.Counter[str]())
    fences = sum((writer.fences for writer in writers), collections.Counter[str]())
    answers = {r: a for writer in writers for r, a in writer.answers.items()}
    assert len(sent) > 40, "too few writes to mean anything"
    assert set(acks) == set(sent) and set(acks.values()) == {1}  # each acked exactly once
    assert [r for r, a in answers.items() if not a["ok"]] == []  # ... and accepted
    assert set(fences) == set(sent) and set(fences.values()) == {1}

    todos = {r: m["d"]["id"] for w in writers for r, m in w.sent if m["type"] == "insert"}
    calls = {r for w in writers for r, m in w.sent if m["type"] == "call"}
    with live.engine.connect() as conn:
        stored = dict(conn.execute(text("SELECT title, CAST(id AS TEXT) FROM t_todos")).all())
        items = dict(conn.execute(text("SELECT title, id FROM t_items")).all())
        requests = conn.execute(text("SELECT count(*) FROM livesync_requests")).scalar_one()
    assert stored == todos  # each insert once, with the client's id
    assert watched == set(todos.values())  # and a subscriber saw each of them
    assert set(items) == calls and len(items) == len(calls)  # each call applied once
    assert {r: answers[r]["result"] for r in calls} == items  # acks name the rows
    assert requests == len(sent)
    assert await asyncio.to_thread(queue_state, live) == (0, 0)

    outputs = "".join(p.output() for p in started if isinstance(p, WorkerProcess))
    assert "claimed" in outputs, outputs  # the killed worker's requests were taken over
    assert "livesync worker second stopped" in second.output()


async def test_a_method_in_a_worker_pushes_to_its_caller(cluster: Any) -> None:
    _, env, started = cluster
    gateway = Gateway(env, "tests.queue_app:live", "--writes", "queue")
    started.append(gateway)
    started.append(WorkerProcess(env, "pusher"))
    async with connected(gateway.port) as client:
        await client.send(type="call", id="c1", m="notify", params={"text": "done"})
        seen = [await client.recv(), await client.recv(), await client.recv()]
        by_type = {m["type"]: m for m in seen}
        assert by_type["msg"] == {"type": "msg", "ev": "notified", "data": {"text": "done"}}
        assert by_type["ack"] == {"type": "ack", "id": "c1", "ok": True}
        assert by_type["fence"] == {"type": "fence", "id": "c1"}
