"""Ordered per document: concurrent writer processes, one topic, a replica equal to the database.

Several processes update the same few rows at once through every ORM write path. Each
publishes after its own COMMIT, so the topic's order may differ from the commit order; the
per-document versions must still let a consumer (:class:`~livesync.replica.Replica`) end up
with exactly the database's documents, and must never repeat or skip within a document.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import random
import threading
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from livesync import ChangeSet, LiveSync, Position
from livesync.replica import Replica
from tests.conftest import database_docs, make_live
from tests.models import Item

FACTOR = float(os.environ.get("LIVESYNC_TEST_TIMEOUT_FACTOR", "1"))
IDS = (1, 2, 3, 4, 5)
WRITERS = 3
TRANSACTIONS = 100
DEADLOCK = "40P01"


# --------------------------------------------------------------------------- writer process
def unit_of_work(session: Session, rng: random.Random, tag: str) -> list[Item]:
    """Load one or two items, change scalar fields, let the flush's version check guard it."""
    items = [session.get(Item, item_id) for item_id in sorted(rng.sample(IDS, rng.choice((1, 2))))]
    for item in items:
        assert item is not None
        item.title = tag
        item.qty += 1
    return items  # type: ignore[return-value]


def json_field(session: Session, rng: random.Random, tag: str) -> list[Item]:
    """Mutate a JSON column in place (nested), or reassign it: both must publish patches.

    The caller keeps the item until COMMIT: an in-place change does not make the ORM hold
    the object, so a dropped one leaves the session's weak identity map with its change.
    """
    item = session.get(Item, rng.choice(IDS))
    assert item is not None
    if rng.random() < 0.5:
        item.data.setdefault("log", []).append(tag)
        item.data["last"] = {"by": tag}
    else:
        item.data = {**item.data, "swap": tag, "n": len(item.data)}
    return [item]


def bulk_where(session: Session, rng: random.Random, tag: str) -> list[Item]:
    """An ORM-enabled bulk UPDATE ... WHERE: livesync locks, bumps and reads the rows."""
    ids = rng.sample(IDS, rng.choice((1, 2, 3)))
    session.execute(
        update(Item).where(Item.id.in_(ids)).values(qty=Item.qty + 10, title=f"bulk {tag}")
    )
    return []


def bulk_by_key(session: Session, rng: random.Random, tag: str) -> list[Item]:
    """An ORM bulk UPDATE by primary key (a list of parameter dicts)."""
    ids = sorted(rng.sample(IDS, 2))
    session.execute(update(Item), [{"id": i, "secret": f"{tag}/{i}"} for i in ids])
    return []


#: Each returns the objects it changed; the writer holds them until COMMIT, as app code does.
OPERATIONS: dict[str, Callable[[Session, random.Random, str], list[Item]]] = {
    "unit_of_work": unit_of_work,
    "json_field": json_field,
    "bulk_where": bulk_where,
    "bulk_by_key": bulk_by_key,
}


def pause_before_publish(jitter: random.Random) -> None:
    """Sometimes linger between COMMIT and publish, long enough to be overtaken."""
    if jitter.random() < 0.25:
        time.sleep(0.005 + jitter.random() / 100)


def run_writer(
    index: int,
    database_url: str,
    broker_url: str,
    topic: str,
    go: Any,
    results: Any,
) -> None:
    """One writer process: ``TRANSACTIONS`` committed transactions, retrying lost races.

    A retry follows a ``StaleDataError`` (another process bumped the version first) or a
    PostgreSQL deadlock (bulk statements lock their rows in no particular order). An
    ``after_commit`` listener sometimes pauses, so later commits are published earlier.
    """
    try:
        live = LiveSync(database_url, broker_url, topic=topic)
        live.collection(Item)
        rng, jitter = random.Random(index), random.Random(-1 - index)
        event.listen(live.sessionmaker, "after_commit", lambda _: pause_before_publish(jitter))
        stats: Counter[str] = Counter()
        if not go.wait(30 * FACTOR):
            raise TimeoutError("never told to start")
        for n in range(TRANSACTIONS):
            name = rng.choice(list(OPERATIONS))
            while True:
                try:
                    with live.sessionmaker() as session:
                        changed = OPERATIONS[name](session, rng, f"w{index}-{n}")
                        session.commit()
                        del changed  # held until after COMMIT (see json_field)
                    break
                except StaleDataError:
                    stats["stale"] += 1
                except OperationalError as exc:
                    if getattr(exc.orig, "sqlstate", None) != DEADLOCK:
                        raise
                    stats["deadlock"] += 1
            stats[name] += 1
            stats["commits"] += 1
        live.close()
        results.put((index, dict(stats), None))
    except BaseException:
        results.put((index, None, traceback.format_exc()))


def run_writers(database_url: str, broker_url: str, topic: str) -> list[dict[str, int]]:
    """Start the writer processes (spawned: no inherited connections), let them race."""
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    results = context.Queue()
    processes = [
        context.Process(
            target=run_writer,
            args=(i, database_url, broker_url, topic, go, results),
            name=f"livesync-writer-{i}",
        )
        for i in range(WRITERS)
    ]
    for process in processes:
        process.start()
    go.set()
    found: dict[int, dict[str, int]] = {}
    try:
        for _ in processes:
            index, stats, error = results.get(timeout=60 * FACTOR)
            assert error is None, f"writer {index} failed:\n{error}"
            found[index] = stats
    except queue.Empty:
        pytest.fail("a writer process neither finished nor reported an error")
    finally:
        for process in processes:
            process.join(10 * FACTOR)
            if process.is_alive():
                process.kill()
                process.join()
        results.close()
        results.join_thread()
    assert [p.exitcode for p in processes] == [0] * WRITERS
    return [found[i] for i in range(WRITERS)]


# --------------------------------------------------------------------------- consumer
class Consumer(threading.Thread):
    """Reads the whole topic from offset 0 while the writers run, applying it to a Replica."""

    def __init__(self, live: LiveSync) -> None:
        super().__init__(name="livesync-consumer", daemon=True)
        self.live = live
        self.replica = Replica()
        self.changesets: list[ChangeSet] = []
        self.writers_done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._consume())
        except BaseException as exc:
            self.error = exc

    async def _consume(self) -> None:
        broker, topic = self.live.broker, self.live.settings.topic
        try:
            after = Position((await broker.position(topic)).epoch, 0)
            while True:
                writers_done = self.writers_done.is_set()  # before the read: no entry missed
                entries = await broker.read(topic, after, limit=500, timeout=0.1)
                for entry in entries:
                    changeset = ChangeSet.decode(entry.payload)
                    self.changesets.append(changeset)
                    self.replica.apply(changeset)
                if entries:
                    after = Position(after.epoch, entries[-1].offset)
                elif writers_done:
                    return
        finally:
            await broker.aclose()

    def finish(self) -> None:
        self.writers_done.set()
        self.join(30 * FACTOR)
        assert not self.is_alive(), "the consumer did not catch up with the topic"
        if self.error is not None:
            raise self.error


# --------------------------------------------------------------------------- checks
def versions_by_document(changesets: list[ChangeSet]) -> dict[tuple[str, str], list[int]]:
    """Each document's published versions, in publish order."""
    found: dict[tuple[str, str], list[int]] = defaultdict(list)
    for changeset in changesets:
        for change in changeset.changes:
            assert change.version is not None, change
            if change.op == "update":
                assert change.prev_version == change.version - 1, change
            found[(change.collection, change.id)].append(change.version)
    return found


def overtaken(versions: list[int]) -> int:
    """How many publishes of one document came after a publish of a newer version."""
    newest, count = 0, 0
    for version in versions:
        count += version < newest
        newest = max(newest, version)
    return count


@pytest.mark.slow
def test_concurrent_writer_processes_converge_per_document(
    postgres_url: str, redis_url: str, unique_topic: str
) -> None:
    """Writer processes racing on five rows (unit of work, JSON, bulk statements) publish
    every committed version of every document exactly once, and a Replica that applies the
    topic in publish order ends with exactly the database's documents and versions."""
    live = make_live(postgres_url, redis_url, topic=unique_topic)
    try:
        items = live.collection(Item)
        with live.sessionmaker() as session:
            session.add_all([Item(id=i, title=f"item {i}", data={}) for i in IDS])
            session.commit()
        consumer = Consumer(live)
        consumer.start()
        try:
            stats = run_writers(postgres_url, redis_url, unique_topic)
        finally:
            consumer.finish()

        assert live.relay().backlog() == 0  # every writer published its own change sets
        database = database_docs(live, items)
        replica = consumer.replica
        assert {key: (c.version, c.doc) for key, c in replica.docs.items()} == database
        assert not replica.stale and not replica.resets
        assert all(version > 1 for version, _ in database.values()), database
        assert replica.applied_patches > 0

        # One change set per committed transaction: none lost, none published twice.
        commits = sum(s["commits"] for s in stats)
        assert commits == WRITERS * TRANSACTIONS
        assert len(consumer.changesets) == 1 + commits  # the seed, then every transaction
        assert len({c.id for c in consumer.changesets}) == len(consumer.changesets)
        # Per document: each version published once, and none skipped (one bump per commit).
        versions = versions_by_document(consumer.changesets)
        for key, (final, _) in database.items():
            assert sorted(versions[key]) == list(range(1, final + 1)), key
        out_of_order = sum(overtaken(v) for v in versions.values())
        retries = sum(s.get("stale", 0) + s.get("deadlock", 0) for s in stats)
        print(f"writers: {stats}; retries {retries}; publishes overtaken {out_of_order}")
    finally:
        live.close()
