"""livesync requests: the stored ack of each accepted client write, for idempotency.

Revision ID: livesync_0002
Revises: livesync_0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "livesync_0002"
down_revision = "livesync_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "livesync_requests",
        sa.Column("client", sa.String(64), primary_key=True),
        sa.Column("request", sa.String(64), primary_key=True),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_livesync_requests_created_at", "livesync_requests", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_livesync_requests_created_at", table_name="livesync_requests")
    op.drop_table("livesync_requests")
