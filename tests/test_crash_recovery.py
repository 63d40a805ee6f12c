"""Nothing lost in a crash: the outbox and the relay deliver what a dead writer never published.

Real processes and real services: a writer killed with SIGKILL between COMMIT and publish,
relays racing over one backlog on PostgreSQL, and relays whose broker fails mid-batch.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from livesync import ChangeSet, LiveSync, Position
from livesync.replica import Replica
from tests.conftest import database_docs, make_live, replica_docs
from tests.crash_writer import KILLED_MARK
from tests.models import Item

ROOT = Path(__file__).resolve().parent.parent
FACTOR = float(os.environ.get("LIVESYNC_TEST_TIMEOUT_FACTOR", "1"))


# --------------------------------------------------------------------------- helpers
def read_topic(live: LiveSync) -> list[ChangeSet]:
    """Every change set on the live's topic, from offset 0, in publish order."""

    async def read() -> list[ChangeSet]:
        broker, topic = live.broker, live.settings.topic
        try:
            after = Position((await broker.position(topic)).epoch, 0)
            found: list[ChangeSet] = []
            while entries := await broker.read(topic, after, limit=1000):
                found += [ChangeSet.decode(e.payload) for e in entries]
                after = Position(after.epoch, entries[-1].offset)
            return found
        finally:
            await broker.aclose()

    return asyncio.run(read())


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it returns something truthy, scaled by the timeout factor."""
    deadline = time.monotonic() + timeout * FACTOR
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout * FACTOR:.1f}s waiting for {what}")
        time.sleep(0.05)


def topic_once_it_holds(live: LiveSync, count: int) -> list[ChangeSet] | None:
    """The topic's change sets if there are at least ``count`` of them, else None."""
    found = read_topic(live)
    return found if len(found) >= count else None


def outbox_rows(live: LiveSync) -> list[ChangeSet]:
    with live.engine.connect() as conn:
        rows = conn.execute(text("SELECT payload FROM livesync_outbox ORDER BY id")).all()
    return [ChangeSet.decode(row[0]) for row in rows]


def replica_of(changesets: list[ChangeSet]) -> Replica:
    replica = Replica()
    for changeset in changesets:
        replica.apply(changeset)
    return replica


def write_orphans(live: LiveSync, count: int) -> list[str]:
    """Commit ``count`` one-item transactions whose publish fails; their rows stay behind."""

    def broker_down(topic: str, payload: Any) -> Any:
        raise ConnectionError("broker down")

    # Inline and background publishing use publish and publish_many respectively.
    live.broker.publish = broker_down  # type: ignore[method-assign]
    live.broker.publish_many = broker_down  # type: ignore[method-assign]
    try:
        for i in range(1, count + 1):
            with live.sessionmaker() as session:
                session.add(Item(id=i, title=f"orphan {i}", data={"i": i}))
                session.commit()
        live._publisher.flush()
    finally:
        del live.broker.publish  # back to the class's real methods
        del live.broker.publish_many
    ids = [changeset.id for changeset in outbox_rows(live)]
    assert len(ids) == count
    return ids


def count_publishes(live: LiveSync, delay: float = 0.0) -> Counter[str]:
    """Count (by change set id) what ``live``'s broker publishes, optionally slowed down."""
    counts: Counter[str] = Counter()
    real = live.broker.publish

    def publish(topic: str, payload: bytes) -> Any:
        if delay:
            time.sleep(delay)
        position = real(topic, payload)
        counts[ChangeSet.decode(payload).id] += 1
        return position

    live.broker.publish = publish  # type: ignore[method-assign]
    return counts


@pytest.fixture
def lives() -> Iterator[list[LiveSync]]:
    """LiveSync instances a test opens; all closed afterwards, whatever happened."""
    opened: list[LiveSync] = []
    yield opened
    for live in opened:
        live.close()


def start_relay_process(database_url: str, broker_url: str, topic: str) -> subprocess.Popen[str]:
    """``livesync relay`` in its own process, with a short grace period and interval."""
    env = {
        **os.environ,
        "LIVESYNC_TOPIC": topic,
        "LIVESYNC_OUTBOX_GRACE": "0.5",
        "LIVESYNC_RELAY_INTERVAL": "0.1",
    }
    command = ["livesync.cli", "relay", "--database-url", database_url, "--broker-url", broker_url]
    return subprocess.Popen(
        [sys.executable, "-m", *command],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop_process(process: subprocess.Popen[str]) -> str:
    """Ctrl-C the process (``livesync relay`` exits 0 on it); returns its stderr."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=10 * FACTOR)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
    return stderr


def run_crash_writer(
    database_url: str, broker_url: str, topic: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.crash_writer", database_url, broker_url, topic],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60 * FACTOR,
        check=False,
    )


# --------------------------------------------------------------------------- a writer dies
@pytest.mark.slow
def test_writer_killed_between_commit_and_publish_loses_nothing(
    database_url: str, redis_url: str, unique_topic: str, lives: list[LiveSync]
) -> None:
    """A writer SIGKILLed after COMMIT, before publishing: its change set is committed with
    its outbox row, is not on the topic, and a `livesync relay` process started afterwards
    delivers exactly that change set and empties the outbox."""
    live = make_live(database_url, redis_url, topic=unique_topic, outbox_grace=0.5)
    lives.append(live)
    items = live.collection(Item)

    writer = run_crash_writer(database_url, redis_url, unique_topic)

    assert writer.returncode == -signal.SIGKILL, (writer.returncode, writer.stderr)
    assert KILLED_MARK in writer.stdout, writer.stderr
    # The crashed transaction is committed...
    docs = database_docs(live, items)
    assert sorted(docs) == [("t_items", str(i)) for i in (1, 2, 3, 4)]
    assert docs[("t_items", "1")][0] == 2
    assert docs[("t_items", "1")][1]["title"] == "updated, then crashed"
    assert docs[("t_items", "1")][1]["data"] == {"n": 1, "crash": True}
    # ...its change set sits in the outbox, alone (the first one was published and cleaned)...
    (orphan,) = outbox_rows(live)
    assert sorted((c.id, c.op, c.version) for c in orphan.changes) == [
        ("1", "update", 2),
        ("4", "insert", 1),
    ]
    # ...and it never reached the broker: only the first transaction is on the topic.
    (first,) = read_topic(live)
    assert sorted((c.id, c.op) for c in first.changes) == [(str(i), "insert") for i in (1, 2, 3)]

    # A relay process started afterwards (``livesync relay``) delivers the orphan.
    relay = start_relay_process(database_url, redis_url, unique_topic)
    try:
        delivered = wait_for(lambda: topic_once_it_holds(live, 2), 10, "the relay")
        wait_for(lambda: not outbox_rows(live), 5, "the relay to delete the outbox row")
    finally:
        relay_log = stop_process(relay)
    assert relay.returncode == 0, relay_log
    assert delivered == [first, orphan]
    replica = replica_of(delivered)
    assert replica_docs(replica) == database_docs(live, items)
    assert replica.applied_patches == 1  # the crashed update arrived as a patch from v1


# --------------------------------------------------------------------------- relays
@pytest.mark.slow
def test_two_relays_over_one_backlog_publish_each_change_set_exactly_once(
    postgres_url: str, redis_url: str, unique_topic: str, lives: list[LiveSync]
) -> None:
    """On PostgreSQL, relays racing over the same backlog never claim the same outbox row
    (FOR UPDATE SKIP LOCKED): 200 orphaned change sets are published once each, in total."""
    writer = make_live(postgres_url, redis_url, topic=unique_topic)
    lives.append(writer)
    writer.collection(Item)
    orphans = write_orphans(writer, 200)
    assert read_topic(writer) == []

    options: dict[str, Any] = {"outbox_grace": 0.05, "relay_batch": 10, "relay_interval": 0.05}
    relay_lives = [LiveSync(postgres_url, redis_url, topic=unique_topic, **options) for _ in "ab"]
    lives.extend(relay_lives)
    # A little work per publish keeps each claim open long enough for the relays to overlap.
    counts = [count_publishes(live, delay=0.002) for live in relay_lives]
    relays = [live.relay() for live in relay_lives]
    time.sleep(0.1)  # every orphan is now past the grace period
    threads = [relay.start() for relay in relays]
    try:
        wait_for(lambda: relays[0].backlog() == 0, 15, "the relays to drain the outbox")
    finally:
        for relay in relays:
            relay.stop()
        for thread in threads:
            thread.join(5 * FACTOR)

    total = counts[0] + counts[1]
    assert sorted(total) == sorted(orphans)
    assert set(total.values()) == {1}, [k for k, n in total.items() if n > 1]
    assert all(counts), f"one relay did all the work: {[sum(c.values()) for c in counts]}"
    on_topic = Counter(changeset.id for changeset in read_topic(writer))
    assert on_topic == Counter(orphans)


def test_relay_whose_broker_fails_leaves_the_rows_for_a_later_run(
    database_url: str, redis_url: str, unique_topic: str, lives: list[LiveSync]
) -> None:
    """A publish failure mid-batch rolls the claim back: every row stays, and a later healthy
    relay publishes them all (at-least-once: the ones sent before the failure come twice)."""
    writer = make_live(database_url, redis_url, topic=unique_topic)
    lives.append(writer)
    items = writer.collection(Item)
    orphans = write_orphans(writer, 5)

    flaky = LiveSync(database_url, redis_url, topic=unique_topic, outbox_grace=0.05)
    lives.append(flaky)
    real = flaky.broker.publish
    sent: list[str] = []

    def fails_on_third(topic: str, payload: bytes) -> Any:
        if len(sent) == 2:
            raise ConnectionError("broker went away")
        sent.append(ChangeSet.decode(payload).id)
        return real(topic, payload)

    flaky.broker.publish = fails_on_third  # type: ignore[method-assign]
    relay = flaky.relay()
    with pytest.raises(ConnectionError):
        relay.run_once(now=time.time() + 1)
    assert [changeset.id for changeset in outbox_rows(writer)] == orphans  # nothing claimed
    assert sent == orphans[:2]
    assert [changeset.id for changeset in read_topic(writer)] == orphans[:2]

    healthy = LiveSync(database_url, redis_url, topic=unique_topic, outbox_grace=0.05)
    lives.append(healthy)
    assert healthy.relay().run_once(now=time.time() + 1) == 5
    assert outbox_rows(writer) == []
    delivered = read_topic(writer)
    assert [changeset.id for changeset in delivered] == orphans[:2] + orphans
    assert replica_docs(replica_of(delivered)) == database_docs(writer, items)
