"""the chat history's tables (the pub/sub store's), under the migrations

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

Until now the store created them itself when it connected: on a database
where it did, they are kept as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "pubsub_channels" not in existing:
        op.create_table(
            "pubsub_channels",
            sa.Column("channel", sa.String(length=512), nullable=False),
            sa.Column("epoch", sa.String(length=32), nullable=False),
            sa.Column("last_seq", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("channel", name=op.f("pk_pubsub_channels")),
        )
    if "pubsub_messages" not in existing:
        op.create_table(
            "pubsub_messages",
            sa.Column("channel", sa.String(length=512), nullable=False),
            sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
            sa.Column("payload", sa.LargeBinary(), nullable=False),
            sa.Column("created_at", sa.Double(), nullable=False),
            sa.Column("dedupe_key", sa.String(length=255), nullable=True),
            sa.PrimaryKeyConstraint("channel", "seq", name=op.f("pk_pubsub_messages")),
        )
        op.create_index(
            "pubsub_messages_dedupe",
            "pubsub_messages",
            ["channel", "dedupe_key"],
            unique=True,
            sqlite_where=sa.text("dedupe_key IS NOT NULL"),
            postgresql_where=sa.text("dedupe_key IS NOT NULL"),
        )


def downgrade() -> None:
    op.drop_index("pubsub_messages_dedupe", table_name="pubsub_messages")
    op.drop_table("pubsub_messages")
    op.drop_table("pubsub_channels")
