"""twitch: users' profile images, EventSub message ids seen

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("profile_image_url", sa.String(length=500), nullable=True))
    op.create_table(
        "eventsub_messages",
        sa.Column("message_id", sa.String(length=100), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_eventsub_messages")),
    )
    op.create_index(op.f("ix_eventsub_messages_received_at"), "eventsub_messages", ["received_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_eventsub_messages_received_at"), table_name="eventsub_messages")
    op.drop_table("eventsub_messages")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("profile_image_url")
