"""room presence

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "room_presence",
        sa.Column("room", sa.String(length=25), nullable=False),
        sa.Column("user_id", sa.String(length=20), nullable=False),
        sa.Column("node_id", sa.String(length=36), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.twitch_id"],
            name=op.f("fk_room_presence_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("room", "user_id", "node_id", name=op.f("pk_room_presence")),
    )
    with op.batch_alter_table("room_presence", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_room_presence_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("room_presence", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_room_presence_expires_at"))

    op.drop_table("room_presence")
