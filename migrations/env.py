"""Alembic environment for livesync's own tables.

livesync keeps its revision in its own version table, ``livesync_alembic_version``, so it
never collides with an application's ``alembic_version``. To fold livesync into an
application's Alembic history instead, see "Migrations" in docs/architecture.md.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine, pool

VERSION_TABLE = "livesync_alembic_version"

config = context.config


def _url() -> str:
    from livesync.live import normalize_database_url

    url = os.environ.get("LIVESYNC_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set LIVESYNC_DATABASE_URL or sqlalchemy.url in alembic.ini")
    return normalize_database_url(url)


def run_offline() -> None:
    context.configure(url=_url(), literal_binds=True, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # livesync.migrate.upgrade() passes its own connection
        context.configure(connection=connection, version_table=VERSION_TABLE)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, version_table=VERSION_TABLE)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
