"""Test databases: create the PostgreSQL database a test run uses, on first use."""

from __future__ import annotations

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

_created: set[str] = set()


def ensure_database(url: str) -> None:
    """Create ``url``'s database if it is PostgreSQL and missing, so tests never share
    tables with other work. Other databases (SQLite files) need nothing."""
    if url in _created or not url.startswith("postgresql"):
        return
    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.exec_driver_sql(
                "SELECT 1 FROM pg_database WHERE datname = %s", (target.database,)
            ).first()
            if not exists:
                conn.exec_driver_sql(f'CREATE DATABASE "{target.database}"')
    finally:
        admin.dispose()
    _created.add(url)
