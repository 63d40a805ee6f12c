"""Run livesync's Alembic migrations programmatically (``livesync db upgrade``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine


def script_location() -> str:
    """The migrations directory, whether livesync runs from a checkout or a wheel."""
    import importlib

    migrations = importlib.import_module("livesync.migrations")
    return str(Path(str(migrations.__file__)).parent)


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", script_location())
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade livesync's tables on ``engine`` to ``revision``."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Downgrade livesync's tables on ``engine`` to ``revision`` (``base`` drops them)."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def current(engine: Engine) -> str | None:
    """The revision livesync's tables are at, or None before the first upgrade."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"version_table": "livesync_alembic_version"}
        )
        return context.get_current_revision()
