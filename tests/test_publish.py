"""Publishing after COMMIT: inline and through the background publisher thread."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import text

from livesync import LiveSync
from tests.conftest import make_live, published
from tests.models import Item


@pytest.fixture
def background_live(database_url: str) -> Any:
    live = make_live(database_url, publish_mode="background")
    live.collection(Item)
    yield live
    live.close()


def commit_items(live: LiveSync, count: int) -> None:
    for i in range(1, count + 1):
        with live.sessionmaker() as s:
            s.add(Item(id=i, title=f"t{i}"))
            s.commit()


def test_background_publishing_keeps_commit_order(background_live: LiveSync) -> None:
    assert background_live._publisher.background
    commit_items(background_live, 50)
    assert background_live._publisher.flush(timeout=10)
    ids = [cs.changes[0].id for cs in published(background_live)]
    assert ids == [str(i) for i in range(1, 51)]


def test_background_failure_leaves_rows_for_the_relay(background_live: LiveSync) -> None:
    live = background_live

    def broker_down(topic: str, payloads: Any) -> Any:
        raise ConnectionError("broker down")

    live.broker.publish_many = broker_down  # type: ignore[method-assign]
    commit_items(live, 3)
    assert live._publisher.flush(timeout=10)
    del live.broker.publish_many
    assert published(live) == []
    live._janitor.flush()
    relay = live.relay()
    assert relay.run_once(now=time.time() + live.settings.outbox_grace + 1) == 3
    assert [cs.changes[0].id for cs in published(live)] == ["1", "2", "3"]


def test_close_drains_the_queue(database_url: str) -> None:
    live = make_live(database_url, publish_mode="background")
    live.collection(Item)
    commit_items(live, 20)
    live.close()  # must not lose what was still queued
    assert len(published(live)) == 20


def test_auto_mode_is_inline_for_memory_and_background_for_redis(
    database_url: str, redis_url: str
) -> None:
    memory = make_live(database_url)
    redis_live = make_live(database_url, redis_url)
    try:
        assert not memory._publisher.background
        assert redis_live._publisher.background
    finally:
        memory.close()
        redis_live.close()


def test_readonly_connections_do_not_take_the_sqlite_write_lock(tmp_path: Any) -> None:
    live = LiveSync(f"sqlite:///{tmp_path / 'ro.db'}", "memory://ro-test")
    try:
        with live.engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
        writer = live.engine.connect()
        writer.begin()
        writer.execute(text("INSERT INTO t VALUES (1)"))  # holds the write lock
        reader = live.engine.connect().execution_options(livesync_readonly=True)
        with reader.begin():
            assert reader.execute(text("SELECT count(*) FROM t")).scalar() == 0
        reader.close()
        writer.rollback()
        writer.close()
    finally:
        live.close()
