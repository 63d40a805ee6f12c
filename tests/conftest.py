"""Shared fixtures: real services, with a skip (locally) or a failure (CI) when missing.

``LIVESYNC_REQUIRE_SERVICES=1`` turns every "service unavailable" skip into a failure, so
CI can never pass by silently skipping the PostgreSQL and Redis tests.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.databases import ensure_database

POSTGRES_URL = os.environ.get(
    "LIVESYNC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/livesync_test"
)
REDIS_URL = os.environ.get("LIVESYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REQUIRE_SERVICES = os.environ.get("LIVESYNC_REQUIRE_SERVICES") == "1"


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 1
        ):
            return True
    except OSError:
        return False


def require_service(name: str, url: str, default_port: int) -> None:
    """Skip the test when the service is down, or fail it when CI requires services."""
    if _reachable(url, default_port):
        ensure_database(url)
        return
    reason = f"{name} is not reachable at {url}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} and LIVESYNC_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(f"{reason}; set LIVESYNC_TEST_{name.upper()}_URL or start it")


@pytest.fixture
def postgres_url() -> str:
    require_service("postgres", POSTGRES_URL, 5432)
    return POSTGRES_URL


@pytest.fixture
def redis_url() -> Iterator[str]:
    require_service("redis", REDIS_URL, 6379)
    yield REDIS_URL


@pytest.fixture
def unique_topic() -> str:
    """A topic name no other test (or earlier run) has used."""
    return f"test-{uuid.uuid4().hex[:12]}"


# --------------------------------------------------------------------------- databases
import asyncio  # noqa: E402

from sqlalchemy import text  # noqa: E402

from livesync import ChangeSet, Collection, LiveSync, Position  # noqa: E402
from livesync.replica import Replica  # noqa: E402


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """Each capture test runs on SQLite (a temp file) and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'live.db'}"
    require_service("postgres", POSTGRES_URL, 5432)
    return POSTGRES_URL


def make_live(database_url: str, broker_url: str | None = None, **options: Any) -> LiveSync:
    """A LiveSync on fresh test tables, with an empty outbox, no stored write answers and its
    own memory broker."""
    from tests.models import Base

    broker_url = broker_url or f"memory://{uuid.uuid4().hex}"
    live = LiveSync(database_url, broker_url, **options)
    with live.engine.begin() as conn:
        Base.metadata.drop_all(conn)
        Base.metadata.create_all(conn)
    live.upgrade()
    with live.engine.begin() as conn:
        conn.execute(text("DELETE FROM livesync_outbox"))
        conn.execute(text("DELETE FROM livesync_requests"))
    return live


@pytest.fixture
def live(database_url: str) -> Iterator[LiveSync]:
    from tests import models

    live = make_live(database_url)
    for model in (models.Item, models.Tracked, models.Folder, models.File, models.Member):
        live.collection(model)
    live.collection(models.Typed)
    yield live
    live.close()


def published(live: LiveSync) -> list[ChangeSet]:
    """Every change set on the live's broker topic so far, in publish order."""

    async def read() -> list[ChangeSet]:
        topic = live.settings.topic
        start = Position((await live.broker.position(topic)).epoch, 0)
        try:
            entries = await live.broker.read(topic, start, limit=100_000)
        finally:
            await live.broker.aclose()  # this loop's client (Redis) ends with the loop
        return [ChangeSet.decode(e.payload) for e in entries]

    return asyncio.run(read())


Docs = dict[tuple[str, str], tuple[int | None, dict[str, Any]]]


def database_docs(live: LiveSync, *collections: Collection) -> Docs:
    """(collection, id) -> (version, document) as the database holds them now."""
    chosen = collections or tuple(live.collections.values())
    with live.engine.connect() as conn:
        return {
            (c.name, doc_id): (version, doc)
            for c in chosen
            for doc_id, version, doc in c.read(conn)
        }


def replica_docs(replica: Replica) -> Docs:
    """The same shape for what a replica holds."""
    return {key: (cached.version, cached.doc) for key, cached in replica.docs.items()}
