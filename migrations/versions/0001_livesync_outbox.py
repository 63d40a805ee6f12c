"""livesync outbox: one row per committed transaction that changed a live collection.

Revision ID: livesync_0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "livesync_0001"
down_revision = None
branch_labels = ("livesync",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "livesync_outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("changeset_id", sa.String(32), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("livesync_outbox")
