"""The LiveSync object: configuration, installing into existing apps, migrations, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, inspect
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import Session, sessionmaker

import livesync
from livesync import LiveSync, migrate
from livesync.brokers.memory import MemoryBroker
from livesync.idempotency import requests_table
from livesync.live import async_database_url, normalize_database_url
from livesync.outbox import outbox_table
from tests.conftest import make_live, published
from tests.models import Item

ROOT = Path(__file__).resolve().parent.parent


def test_public_api_is_curated() -> None:
    """Everything public in the package namespace is in __all__, and nothing else."""
    exported = {
        name
        for name in dir(livesync)
        if not name.startswith("_") and not isinstance(getattr(livesync, name), ModuleType)
    }
    assert exported == set(livesync.__all__)
    assert set(livesync.__all__) == set(livesync._EXPORTS)
    for name in livesync.__all__:  # every lazy name resolves
        assert getattr(livesync, name) is not None


def test_defaults_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("LIVESYNC_DATABASE_URL", url)
    monkeypatch.setenv("LIVESYNC_BROKER_URL", "memory://from-env")
    monkeypatch.setenv("LIVESYNC_HISTORY", "123")
    live = LiveSync()
    try:
        assert live.settings.database_url == url
        assert isinstance(live.broker, MemoryBroker)
        assert live.broker.history == 123
        assert live.engine.url.database == str(tmp_path / "env.db")
    finally:
        live.close()
    explicit = LiveSync(f"sqlite:///{tmp_path / 'arg.db'}", "memory://arg", history=7)
    try:  # arguments beat the environment
        assert explicit.settings.database_url.endswith("arg.db")
        assert explicit.broker.history == 7
    finally:
        explicit.close()


def test_built_in_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LIVESYNC_DATABASE_URL", "LIVESYNC_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = livesync.Settings()
    assert (settings.database_url, settings.broker_url) == ("sqlite:///livesync.db", "memory://")


def test_database_url_drivers() -> None:
    assert normalize_database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert async_database_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert async_database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"


def test_install_instruments_an_existing_sessionmaker(database_url: str) -> None:
    live = make_live(database_url)
    try:
        live.collection(Item)
        app_factory = sessionmaker(live.engine)  # what Flask-SQLAlchemy and friends hold
        assert live.install(app_factory) is app_factory
        with app_factory() as s:
            s.add(Item(id=1, title="from the app"))
            s.commit()
        assert [c.changes[0].op for c in published(live)] == ["insert"]
        with pytest.raises(ValueError, match="already instrumented"):
            live.install(app_factory)
        with pytest.raises(TypeError, match="subclass it"):
            live.install(Session)
        with pytest.raises(TypeError, match="takes a sessionmaker"):
            live.install(object())
        plain = sessionmaker(live.engine)  # not installed: invisible, as documented
        with plain() as s:
            s.add(Item(id=2, title="unseen"))
            s.commit()
        assert len(published(live)) == 1
    finally:
        live.close()


def test_install_on_an_async_sessionmaker_uses_the_instrumented_class(tmp_path: Any) -> None:
    live = LiveSync(f"sqlite:///{tmp_path / 'a.db'}", f"memory://{uuid.uuid4().hex}")
    try:
        factory = async_sessionmaker(live.async_engine)
        live.install(factory)
        assert factory.kw["sync_session_class"] is live.Session
    finally:
        live.close()


def test_install_on_a_session_subclass(tmp_path: Any) -> None:
    live = LiveSync(f"sqlite:///{tmp_path / 's.db'}", f"memory://{uuid.uuid4().hex}")
    try:

        class AppSession(Session):
            pass

        live.install(AppSession)
        with pytest.raises(ValueError, match="already instrumented"):
            live.install(type("Child", (AppSession,), {}))
    finally:
        live.close()


def test_migrations_match_the_table_definitions(database_url: str) -> None:
    engine = create_engine(normalize_database_url(database_url))
    ours = ("livesync_outbox", "livesync_requests")
    try:
        migrate.downgrade(engine, "base") if migrate.current(engine) else None
        assert not set(ours) & set(inspect(engine).get_table_names())
        migrate.upgrade(engine, "livesync_0001")  # an existing deployment, before writes
        assert "livesync_requests" not in inspect(engine).get_table_names()
        migrate.upgrade(engine)
        assert migrate.current(engine) == "livesync_0002"
        metadata = MetaData()
        outbox_table(metadata)
        requests_table(metadata)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        relevant = [d for d in diff if any(name in repr(d) for name in ours)]
        assert relevant == []
        assert {c["name"] for c in inspect(engine).get_columns("livesync_requests")} == {
            "client",
            "request",
            "response",
            "created_at",
        }
        pk = inspect(engine).get_pk_constraint("livesync_requests")["constrained_columns"]
        assert pk == ["client", "request"]
        migrate.upgrade(engine)  # idempotent
        migrate.downgrade(engine, "livesync_0001")
        assert "livesync_requests" not in inspect(engine).get_table_names()
        assert "livesync_outbox" in inspect(engine).get_table_names()
        migrate.upgrade(engine)
    finally:
        engine.dispose()


def _run(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> str:
    result = subprocess.run(
        args,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout + result.stderr


def test_alembic_and_the_cli_create_the_same_table(tmp_path: Any) -> None:
    alembic = str(Path(sys.executable).parent / "alembic")
    livesync_cli = str(Path(sys.executable).parent / "livesync")
    by_alembic = f"sqlite:///{tmp_path / 'alembic.db'}"
    _run(alembic, "upgrade", "head", env={"LIVESYNC_DATABASE_URL": by_alembic})
    by_cli = f"sqlite:///{tmp_path / 'cli.db'}"
    out = _run(livesync_cli, "db", "upgrade", "--database-url", by_cli)
    assert "livesync_0002" in out
    assert "Running upgrade livesync_0001 -> livesync_0002" in out  # one line per step
    for url in (by_alembic, by_cli):
        engine = create_engine(url)
        try:
            tables = set(inspect(engine).get_table_names())
            assert {"livesync_outbox", "livesync_requests"} <= tables
            assert migrate.current(engine) == "livesync_0002"
        finally:
            engine.dispose()
