"""moderation: moderators, bans and timeouts, chat modes, the audit log, chat senders

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _room(table: str) -> list[sa.schema.SchemaItem]:
    return [
        sa.Column("room_id", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(
            ["room_id"],
            ["streamers.id"],
            name=op.f(f"fk_{table}_room_id_streamers"),
            ondelete="CASCADE",
        ),
    ]


def _user(table: str) -> list[sa.schema.SchemaItem]:
    return [
        sa.Column("user_id", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.twitch_id"],
            name=op.f(f"fk_{table}_user_id_users"),
            ondelete="CASCADE",
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "room_moderators",
        *_room("room_moderators"),
        *_user("room_moderators"),
        sa.Column("added_by", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("room_id", "user_id", name=op.f("pk_room_moderators")),
    )
    op.create_table(
        "room_bans",
        *_room("room_bans"),
        *_user("room_bans"),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("banned_by", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("room_id", "user_id", name=op.f("pk_room_bans")),
    )
    op.create_table(
        "room_settings",
        *_room("room_settings"),
        sa.Column("slow_seconds", sa.Integer(), nullable=False),
        sa.Column("unique_chat", sa.Boolean(), nullable=False),
        sa.Column("blocked_terms", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("room_id", name=op.f("pk_room_settings")),
    )
    op.create_table(
        "moderation_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        *_room("moderation_log"),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("actor_id", sa.String(length=20), nullable=False),
        sa.Column("target_id", sa.String(length=20), nullable=True),
        sa.Column("seq", sa.Integer(), nullable=True),
        sa.Column("seconds", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_moderation_log")),
    )
    op.create_index(op.f("ix_moderation_log_room_id"), "moderation_log", ["room_id"])
    op.create_table(
        "chat_senders",
        sa.Column("room_id", sa.String(length=20), nullable=False),
        sa.Column("user_id", sa.String(length=20), nullable=False),
        sa.Column("times", sa.Text(), nullable=False),
        sa.Column("digest", sa.String(length=32), nullable=True),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("room_id", "user_id", name=op.f("pk_chat_senders")),
    )
    op.create_index(op.f("ix_chat_senders_updated_at"), "chat_senders", ["updated_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_chat_senders_updated_at"), table_name="chat_senders")
    op.drop_table("chat_senders")
    op.drop_index(op.f("ix_moderation_log_room_id"), table_name="moderation_log")
    op.drop_table("moderation_log")
    op.drop_table("room_settings")
    op.drop_table("room_bans")
    op.drop_table("room_moderators")
