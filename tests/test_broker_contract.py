"""The broker contract from ``livesync/brokers/base.py``, run against every backend.

The Redis cases use the real server from ``redis_url`` (skipped locally, failing in CI
when it is missing). Each Redis broker gets its own key prefix, deleted afterwards.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from livesync import brokers
from livesync.brokers import (
    Broker,
    Entry,
    HistoryLost,
    MemoryBroker,
    Position,
    RedisBroker,
    connect_broker,
)

MakeBroker = Callable[[int], Broker]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def make_broker(request: pytest.FixtureRequest) -> AsyncIterator[MakeBroker]:
    """Builds brokers of one backend with a given history; closes and cleans up after."""
    url: str | None = request.getfixturevalue("redis_url") if request.param == "redis" else None
    prefix = f"livesync-test-{uuid.uuid4().hex[:12]}"
    made: list[Broker] = []

    def make(history: int = 10_000) -> Broker:
        broker: Broker
        if url is None:
            broker = MemoryBroker(history=history)
        else:
            broker = RedisBroker(url, history=history, prefix=prefix)
        made.append(broker)
        return broker

    yield make
    for broker in made:
        await broker.aclose()
        broker.close()
    if url is not None:
        with redis.Redis.from_url(url) as client:
            for key in client.scan_iter(match=f"{{{prefix}:*"):
                client.delete(key)


@pytest.fixture
def broker(make_broker: MakeBroker) -> Broker:
    return make_broker(10_000)


@pytest.fixture
def redis_broker(redis_url: str) -> Iterator[RedisBroker]:
    """A Redis broker for the backend-specific cases; callers run ``aclose`` themselves."""
    broker = RedisBroker(redis_url, history=100)
    yield broker
    broker.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as client:
        yield client


def publish_many(broker: Broker, topic: str, count: int) -> list[Position]:
    return [broker.publish(topic, f"m{i}".encode()) for i in range(1, count + 1)]


# --- ordering and positions ---------------------------------------------------------


async def test_offsets_start_at_one_and_are_contiguous(broker: Broker, unique_topic: str) -> None:
    positions = publish_many(broker, unique_topic, 5)
    positions.append(await broker.publish_async(unique_topic, b"m6"))
    assert [p.offset for p in positions] == [1, 2, 3, 4, 5, 6]
    assert {p.epoch for p in positions} == {(await broker.position(unique_topic)).epoch}
    assert await broker.position(unique_topic) == positions[-1]


async def test_position_of_empty_topic_is_zero_in_a_stable_epoch(
    broker: Broker, unique_topic: str
) -> None:
    first = await broker.position(unique_topic)
    assert first.offset == 0
    assert await broker.position(unique_topic) == first
    assert await broker.read(unique_topic, first) == []
    assert broker.publish(unique_topic, b"x") == Position(first.epoch, 1)


async def test_read_returns_exactly_the_later_entries_in_order(
    broker: Broker, unique_topic: str
) -> None:
    positions = publish_many(broker, unique_topic, 5)
    entries = await broker.read(unique_topic, positions[1])
    assert entries == [Entry(3, b"m3"), Entry(4, b"m4"), Entry(5, b"m5")]
    assert await broker.read(unique_topic, positions[-1]) == []
    start = Position(positions[0].epoch, 0)
    assert [e.offset for e in await broker.read(unique_topic, start)] == [1, 2, 3, 4, 5]


async def test_publish_many_keeps_order_and_offsets(broker: Broker, unique_topic: str) -> None:
    broker.publish(unique_topic, b"first")
    positions = broker.publish_many(unique_topic, [b"a", b"b", b"c"])
    assert [p.offset for p in positions] == [2, 3, 4]
    start = Position(positions[0].epoch, 1)
    assert [e.payload for e in await broker.read(unique_topic, start)] == [b"a", b"b", b"c"]
    assert broker.publish_many(unique_topic, []) == []


async def test_read_respects_limit(broker: Broker, unique_topic: str) -> None:
    publish_many(broker, unique_topic, 5)
    start = Position((await broker.position(unique_topic)).epoch, 1)
    assert [e.offset for e in await broker.read(unique_topic, start, limit=2)] == [2, 3]
    assert [e.offset for e in await broker.read(unique_topic, start, limit=1)] == [2]
    with pytest.raises(ValueError):
        await broker.read(unique_topic, start, limit=0)


async def test_payload_bytes_round_trip(broker: Broker, unique_topic: str) -> None:
    payloads = [bytes(range(256)), b"", b"\x00" * 7, b"\xff\x00d\x00", "é✓".encode()]
    for payload in payloads:
        broker.publish(unique_topic, payload)
    await broker.publish_async(unique_topic, b"\x00async\x00")
    start = Position((await broker.position(unique_topic)).epoch, 0)
    got = [e.payload for e in await broker.read(unique_topic, start)]
    assert got == [*payloads, b"\x00async\x00"]
    assert all(type(p) is bytes for p in got)


async def test_topics_are_independent(broker: Broker, unique_topic: str) -> None:
    other = f"{unique_topic}-other"
    publish_many(broker, unique_topic, 3)
    assert broker.publish(other, b"o1").offset == 1
    assert (await broker.position(unique_topic)).offset == 3
    start = Position((await broker.position(other)).epoch, 0)
    assert await broker.read(other, start) == [Entry(1, b"o1")]


async def test_concurrent_publishers_get_unique_contiguous_offsets(
    broker: Broker, unique_topic: str
) -> None:
    threads, per_thread = 8, 50

    def publish_all() -> list[tuple[int, bytes]]:
        def work(t: int) -> list[tuple[int, bytes]]:
            out = []
            for i in range(per_thread):
                payload = f"t{t}-{i}".encode()
                out.append((broker.publish(unique_topic, payload).offset, payload))
            return out

        with ThreadPoolExecutor(threads) as pool:
            return [pair for chunk in pool.map(work, range(threads)) for pair in chunk]

    published = await asyncio.to_thread(publish_all)
    total = threads * per_thread
    assert sorted(offset for offset, _ in published) == list(range(1, total + 1))
    start = Position((await broker.position(unique_topic)).epoch, 0)
    entries = await broker.read(unique_topic, start, limit=total + 10)
    assert [e.offset for e in entries] == list(range(1, total + 1))
    assert sorted(e.payload for e in entries) == sorted(p for _, p in published)
    assert {(e.offset, e.payload) for e in entries} == set(published)


# --- waiting ------------------------------------------------------------------------


async def test_read_wakes_when_another_thread_publishes(broker: Broker, unique_topic: str) -> None:
    start = await broker.position(unique_topic)
    began = time.monotonic()
    reader = asyncio.create_task(broker.read(unique_topic, start, timeout=10))
    await asyncio.sleep(0.1)
    thread = threading.Thread(target=broker.publish, args=(unique_topic, b"from-thread"))
    thread.start()
    entries = await reader
    await asyncio.to_thread(thread.join)
    assert entries == [Entry(1, b"from-thread")]
    assert time.monotonic() - began < 5


async def test_read_wakes_on_publish_async(broker: Broker, unique_topic: str) -> None:
    start = await broker.position(unique_topic)
    reader = asyncio.create_task(broker.read(unique_topic, start, timeout=10))
    await asyncio.sleep(0.1)
    began = time.monotonic()
    await broker.publish_async(unique_topic, b"async")
    assert await reader == [Entry(1, b"async")]
    assert time.monotonic() - began < 5


async def test_read_wakes_a_reader_in_another_event_loop(broker: Broker, unique_topic: str) -> None:
    start = await broker.position(unique_topic)

    async def read_elsewhere() -> list[Entry]:
        try:
            return await broker.read(unique_topic, start, timeout=10)
        finally:
            await broker.aclose()

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(asyncio.run, read_elsewhere())
        await asyncio.sleep(0.2)
        await broker.publish_async(unique_topic, b"cross-loop")
        assert await asyncio.wrap_future(future) == [Entry(1, b"cross-loop")]


async def test_read_times_out_with_an_empty_list(broker: Broker, unique_topic: str) -> None:
    publish_many(broker, unique_topic, 2)
    last = await broker.position(unique_topic)
    began = time.monotonic()
    assert await broker.read(unique_topic, last, timeout=0.3) == []
    assert 0.25 <= time.monotonic() - began < 3
    began = time.monotonic()
    assert await broker.read(unique_topic, last) == []
    assert await broker.read(unique_topic, last, timeout=0) == []
    assert time.monotonic() - began < 1


async def test_a_reader_at_the_head_sees_what_comes_next_polling_or_waiting(
    broker: Broker, unique_topic: str
) -> None:
    """A reader that reached the head of the log reads on from there: a poll (no timeout)
    and a wait both find the next entry, and a reset meanwhile is still lost history.
    (Redis waits first at the head, skipping one snapshot: this pins what it must keep.)"""
    start = await broker.position(unique_topic)
    publish_many(broker, unique_topic, 1)
    assert [e.offset for e in await broker.read(unique_topic, start)] == [1]
    head = Position(start.epoch, 1)
    assert await broker.read(unique_topic, head) == []  # at the head: nothing, at once
    broker.publish(unique_topic, b"polled")
    assert await broker.read(unique_topic, head) == [Entry(2, b"polled")]
    head = Position(start.epoch, 2)
    broker.publish(unique_topic, b"waited")
    assert await broker.read(unique_topic, head, timeout=5) == [Entry(3, b"waited")]
    with pytest.raises(HistoryLost):
        await broker.read(unique_topic, Position("another-epoch", 3), timeout=0.2)


# --- lost history -------------------------------------------------------------------


async def test_trimmed_history_is_lost_exactly_where_entries_are_gone(
    make_broker: MakeBroker, unique_topic: str
) -> None:
    broker = make_broker(10)
    total = 300  # Redis trims whole stream nodes (100 entries by default); exceed them.
    publish_many(broker, unique_topic, total)
    current = await broker.position(unique_topic)
    assert current.offset == total
    covered: list[int] = []
    for offset in range(total + 1):
        try:
            entries = await broker.read(unique_topic, Position(current.epoch, offset), limit=1)
        except HistoryLost as lost:
            assert lost.current == current
            assert lost.requested == Position(current.epoch, offset)
            assert not covered, f"offset {offset} lost after {covered[-1]} was covered"
        else:
            covered.append(offset)
            assert entries == (
                [Entry(offset + 1, f"m{offset + 1}".encode())] if offset < total else []
            )
    first_covered = covered[0]
    assert 0 < first_covered <= total - 10  # something was trimmed; history is kept
    if isinstance(broker, MemoryBroker):
        assert first_covered == total - 10


async def test_wrong_epoch_is_lost_history(broker: Broker, unique_topic: str) -> None:
    publish_many(broker, unique_topic, 2)
    current = await broker.position(unique_topic)
    for offset in (0, 1, 2):
        with pytest.raises(HistoryLost) as caught:
            await broker.read(unique_topic, Position("another-epoch", offset), timeout=1)
        assert caught.value.current == current
        assert caught.value.requested == Position("another-epoch", offset)


async def test_future_or_negative_offset_is_lost_history(broker: Broker, unique_topic: str) -> None:
    empty = await broker.position(unique_topic)
    with pytest.raises(HistoryLost) as caught:
        await broker.read(unique_topic, Position(empty.epoch, 1))
    assert caught.value.current == empty
    publish_many(broker, unique_topic, 2)
    current = await broker.position(unique_topic)
    for offset in (3, 100, -1, -5):
        with pytest.raises(HistoryLost) as caught:
            await broker.read(unique_topic, Position(current.epoch, offset), timeout=1)
        assert caught.value.current == current


# --- memory only --------------------------------------------------------------------


def test_memory_publish_survives_a_reader_whose_loop_closed(unique_topic: str) -> None:
    broker = MemoryBroker()
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda _loop, _context: None)  # the abandoned task
    task = loop.create_task(broker.read(unique_topic, Position(broker.epoch, 0), timeout=60))
    loop.run_until_complete(asyncio.sleep(0.01))
    loop.close()
    assert broker.publish(unique_topic, b"x") == Position(broker.epoch, 1)
    task.get_coro().close()


# --- redis only ---------------------------------------------------------------------


@pytest.mark.redis
def test_redis_keys_share_a_hash_tag(redis_url: str) -> None:
    broker = RedisBroker(redis_url)
    assert broker.keys("t") == ("{livesync:t}:log", "{livesync:t}:seq", "{livesync:t}:epoch")
    other = RedisBroker(redis_url, prefix="app")
    assert other.keys("a:b") == ("{app:a:b}:log", "{app:a:b}:seq", "{app:a:b}:epoch")


@pytest.mark.redis
async def test_redis_restart_starts_a_new_epoch(
    redis_broker: RedisBroker, redis_client: redis.Redis, unique_topic: str
) -> None:
    try:
        publish_many(redis_broker, unique_topic, 3)
        old = await redis_broker.position(unique_topic)
        redis_client.delete(*redis_broker.keys(unique_topic))  # what a restart leaves

        with pytest.raises(HistoryLost) as caught:
            await redis_broker.read(unique_topic, old)
        fresh = caught.value.current
        assert fresh.offset == 0 and fresh.epoch != old.epoch
        assert redis_broker.publish(unique_topic, b"again") == Position(fresh.epoch, 1)
        assert await redis_broker.read(unique_topic, fresh) == [Entry(1, b"again")]
    finally:
        redis_client.delete(*redis_broker.keys(unique_topic))
        await redis_broker.aclose()


@pytest.mark.redis
async def test_redis_waiting_reader_of_a_lost_epoch_gets_history_lost(
    redis_broker: RedisBroker, redis_client: redis.Redis, unique_topic: str
) -> None:
    try:
        publish_many(redis_broker, unique_topic, 2)
        old = await redis_broker.position(unique_topic)
        reader = asyncio.create_task(redis_broker.read(unique_topic, old, timeout=10))
        await asyncio.sleep(0.1)
        redis_client.delete(*redis_broker.keys(unique_topic))
        # New-epoch offsets 1..3 pass the old offset 2: the waiting XREAD sees them.
        new = await asyncio.to_thread(publish_many, redis_broker, unique_topic, 3)
        with pytest.raises(HistoryLost) as caught:
            await reader
        assert caught.value.current == new[-1] and new[-1].epoch != old.epoch
    finally:
        redis_client.delete(*redis_broker.keys(unique_topic))
        await redis_broker.aclose()


@pytest.mark.redis
@pytest.mark.parametrize("lost_key", [1, 2], ids=["seq", "epoch"])
async def test_redis_partial_loss_starts_a_new_epoch(
    redis_broker: RedisBroker, redis_client: redis.Redis, unique_topic: str, lost_key: int
) -> None:
    try:
        publish_many(redis_broker, unique_topic, 3)
        old = await redis_broker.position(unique_topic)
        redis_client.delete(redis_broker.keys(unique_topic)[lost_key])
        position = redis_broker.publish(unique_topic, b"after")
        assert position.offset == 1 and position.epoch != old.epoch
        assert redis_client.xlen(redis_broker.keys(unique_topic)[0]) == 1
        with pytest.raises(HistoryLost):
            await redis_broker.read(unique_topic, old)
    finally:
        redis_client.delete(*redis_broker.keys(unique_topic))
        await redis_broker.aclose()


@pytest.mark.redis
async def test_redis_coverage_follows_the_actual_stream(
    redis_broker: RedisBroker, redis_client: redis.Redis, unique_topic: str
) -> None:
    try:
        publish_many(redis_broker, unique_topic, 10)
        epoch = (await redis_broker.position(unique_topic)).epoch
        redis_client.xtrim(
            redis_broker.keys(unique_topic)[0], maxlen=3, approximate=False
        )  # keeps 8, 9, 10
        entries = await redis_broker.read(unique_topic, Position(epoch, 7))
        assert [e.offset for e in entries] == [8, 9, 10]
        with pytest.raises(HistoryLost):
            await redis_broker.read(unique_topic, Position(epoch, 6))
        redis_client.delete(redis_broker.keys(unique_topic)[0])  # the stream alone evicted
        assert await redis_broker.read(unique_topic, Position(epoch, 10)) == []
        with pytest.raises(HistoryLost):
            await redis_broker.read(unique_topic, Position(epoch, 9))
        assert redis_broker.publish(unique_topic, b"m11") == Position(epoch, 11)
    finally:
        redis_client.delete(*redis_broker.keys(unique_topic))
        await redis_broker.aclose()


@pytest.mark.redis
async def test_redis_scripts_survive_script_flush(
    redis_broker: RedisBroker, redis_client: redis.Redis, unique_topic: str
) -> None:
    try:
        assert redis_broker.publish(unique_topic, b"1").offset == 1
        assert (await redis_broker.publish_async(unique_topic, b"2")).offset == 2
        redis_client.script_flush()
        assert redis_broker.publish(unique_topic, b"3").offset == 3
        redis_client.script_flush()
        assert (await redis_broker.publish_async(unique_topic, b"4")).offset == 4
        redis_client.script_flush()
        assert (await redis_broker.position(unique_topic)).offset == 4
        redis_client.script_flush()
        assert [p.offset for p in redis_broker.publish_many(unique_topic, [b"5", b"6"])] == [5, 6]
    finally:
        redis_client.delete(*redis_broker.keys(unique_topic))
        await redis_broker.aclose()


@pytest.mark.redis
@pytest.mark.parametrize(
    ("query", "wait"),
    [("?socket_timeout=0.4", 1.2), pytest.param("", 5.5, marks=pytest.mark.slow)],
    ids=["short-socket-timeout", "default-socket-timeout"],
)
async def test_redis_waits_longer_than_the_socket_timeout(
    redis_url: str, unique_topic: str, query: str, wait: float
) -> None:
    broker = RedisBroker(redis_url + query)
    try:
        start = await broker.position(unique_topic)
        reader = asyncio.create_task(broker.read(unique_topic, start, timeout=wait + 5))
        await asyncio.sleep(wait)
        await broker.publish_async(unique_topic, b"late")
        assert await reader == [Entry(1, b"late")]
        if query:
            began = time.monotonic()
            assert await broker.read(unique_topic, Position(start.epoch, 1), timeout=wait) == []
            assert time.monotonic() - began >= wait - 0.05
    finally:
        await broker.aclose()
        with redis.Redis.from_url(redis_url) as client:
            client.delete(*broker.keys(unique_topic))


# --- connect_broker -----------------------------------------------------------------


def _default_memory_history() -> int:
    """The plain ``memory://`` instance may exist already, made by another test."""
    existing = brokers._shared_memory.get("")
    return 10_000 if existing is None else existing.history


def test_connect_memory_shares_one_instance_per_name() -> None:
    name = f"memory://test-{uuid.uuid4().hex}"
    first = connect_broker(name, history=50)
    assert isinstance(first, MemoryBroker) and first.history == 50 and first.url == name
    assert connect_broker(name, history=50) is first
    assert connect_broker(f"{name}-other", history=50) is not first
    default = connect_broker("memory://", history=_default_memory_history())
    assert connect_broker("memory://", history=default.history) is default
    assert default is not first
    with pytest.raises(ValueError, match="history=50"):
        connect_broker(name, history=60)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/15",
        "rediss://user:secret@example.com:6380/2",
        "unix:///tmp/r.sock?db=3",
    ],
)
def test_connect_redis_schemes(url: str) -> None:
    broker = connect_broker(url, history=123)  # connects lazily, on first use
    assert isinstance(broker, RedisBroker)
    assert broker.url == url and broker.history == 123
    broker.close()


@pytest.mark.parametrize("url", ["kafka://host", "127.0.0.1:6379", "", "memory:"])
def test_connect_unknown_scheme_is_rejected(url: str) -> None:
    with pytest.raises(ValueError, match=r"memory://, redis://, rediss://, unix://"):
        connect_broker(url)


def test_redis_broker_rejects_decoded_responses() -> None:
    with pytest.raises(ValueError, match="decode_responses"):
        RedisBroker("redis://127.0.0.1:6379/0?decode_responses=True")
