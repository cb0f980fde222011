"""The tables of streamchat, and the chat history's (the pub/sub store's) tables."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from streamchat.pubsub.backends.stores.sql import define_tables

__all__ = [
    "PUBSUB_CHANNELS",
    "PUBSUB_MESSAGES",
    "ActorLease",
    "Base",
    "ChatSender",
    "ClusterNode",
    "Deployment",
    "EventSubMessage",
    "ModerationEntry",
    "RoomBan",
    "RoomModerator",
    "RoomPresence",
    "RoomSettings",
    "Session",
    "Streamer",
    "User",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every database (SQLite has no time zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Streamer(Base):
    """A Twitch broadcaster: the identity of a Helix user plus its stream's state."""

    __tablename__ = "streamers"

    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    login: Mapped[str] = mapped_column(String(25), unique=True)
    display_name: Mapped[str] = mapped_column(String(50))
    description: Mapped[str] = mapped_column(Text, default="")
    profile_image_url: Mapped[str] = mapped_column(Text, default="")
    offline_image_url: Mapped[str] = mapped_column(Text, default="")
    broadcaster_type: Mapped[str] = mapped_column(String(20), default="")
    live: Mapped[bool] = mapped_column(Boolean, default=False)
    title: Mapped[str] = mapped_column(Text, default="")
    game_id: Mapped[str] = mapped_column(String(20), default="")
    game_name: Mapped[str] = mapped_column(Text, default="")
    viewer_count: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    language: Mapped[str] = mapped_column(String(10), default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class User(Base):
    """A viewer, identified by their Twitch user ID."""

    __tablename__ = "users"

    twitch_id: Mapped[str] = mapped_column(String(20), primary_key=True)
    #: Lower-case, unique when set, like Twitch's own logins.
    login: Mapped[str | None] = mapped_column(String(25), unique=True, nullable=True)
    display_name: Mapped[str | None] = mapped_column(String(50), nullable=True)
    #: From Twitch, for users who logged in with it.
    profile_image_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    favorite_streamer_id: Mapped[str | None] = mapped_column(
        ForeignKey("streamers.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Session(Base):
    """A server-side login session; the cookie holds a token whose hash is the key."""

    __tablename__ = "sessions"

    #: SHA-256 of the cookie token, so a copy of the table cannot be replayed as cookies.
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.twitch_id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class RoomPresence(Base):
    """A logged-in user subscribed to a room on one server process (a node).

    Each node refreshes ``expires_at`` of its rows while it lives, so the rows
    of a node that died stop counting once they expire.
    """

    __tablename__ = "room_presence"

    room: Mapped[str] = mapped_column(String(25), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.twitch_id", ondelete="CASCADE"), primary_key=True
    )
    node_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class ClusterNode(Base):
    """A live streamchat process (a server or a worker), kept alive by its heartbeat."""

    __tablename__ = "cluster_nodes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    #: ``server`` or ``worker``.
    kind: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class ActorLease(Base):
    """Which process runs a singleton actor: the holder renews it, or loses it on expiry.

    Times are UNIX seconds read from the database's clock when a statement runs,
    so a statement that waited on a lock decides with the time it ran at.
    """

    __tablename__ = "actor_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(36))
    acquired_at: Mapped[float] = mapped_column(Double)
    expires_at: Mapped[float] = mapped_column(Double)
    #: Paused by an operator: the actor stays paused in whichever process takes it.
    paused: Mapped[bool] = mapped_column(Boolean, default=False)


class Deployment(Base):
    """One row: the id every process of this deployment shares (its broker namespace)."""

    __tablename__ = "deployment"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


#: The chat history: the pub/sub store's tables, created by the migrations here (the
#: store is told not to create them).
PUBSUB_CHANNELS, PUBSUB_MESSAGES = define_tables(Base.metadata)


class EventSubMessage(Base):
    """An EventSub message id already handled: a replay of it is not handled again."""

    __tablename__ = "eventsub_messages"

    message_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    #: Twitch refuses to resend after 10 minutes; rows older than that are pruned.
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


# -- moderation ---------------------------------------------------------------------------


class RoomModerator(Base):
    """A moderator of a room, appointed by its broadcaster (or an operator)."""

    __tablename__ = "room_moderators"

    room_id: Mapped[str] = mapped_column(
        ForeignKey("streamers.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.twitch_id", ondelete="CASCADE"), primary_key=True
    )
    added_by: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RoomBan(Base):
    """A user who may not chat in a room: for good (a ban) or until ``expires_at`` (a
    timeout)."""

    __tablename__ = "room_bans"

    room_id: Mapped[str] = mapped_column(
        ForeignKey("streamers.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.twitch_id", ondelete="CASCADE"), primary_key=True
    )
    #: None: banned; otherwise a timeout that ends then.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reason: Mapped[str] = mapped_column(String(500), default="")
    banned_by: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RoomSettings(Base):
    """A room's chat modes; a room without a row has them all off."""

    __tablename__ = "room_settings"

    room_id: Mapped[str] = mapped_column(
        ForeignKey("streamers.id", ondelete="CASCADE"), primary_key=True
    )
    slow_seconds: Mapped[int] = mapped_column(Integer, default=0)
    unique_chat: Mapped[bool] = mapped_column(Boolean, default=False)
    #: A JSON list of lower-case terms.
    blocked_terms: Mapped[str] = mapped_column(Text, default="[]")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ModerationEntry(Base):
    """The audit log: one row per moderation action, whoever took it."""

    __tablename__ = "moderation_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    room_id: Mapped[str] = mapped_column(ForeignKey("streamers.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(20))
    #: A user's Twitch ID, or ``operator`` for the admin token.
    actor_id: Mapped[str] = mapped_column(String(20))
    target_id: Mapped[str | None] = mapped_column(String(20), nullable=True)
    seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str] = mapped_column(String(500), default="")
    #: What else the action carried (terms added and removed, unique on or off), as JSON.
    details: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ChatSender(Base):
    """One user's recent messages in one room, for limits every process must share (the
    rate limit, slow mode, unique mode). Rows of users silent for minutes are deleted."""

    __tablename__ = "chat_senders"

    room_id: Mapped[str] = mapped_column(String(20), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(20), primary_key=True)
    #: A JSON list of UNIX times, oldest first: the messages still inside a window.
    times: Mapped[str] = mapped_column(Text)
    #: The digest of the last message's text (unique mode).
    digest: Mapped[str | None] = mapped_column(String(32), nullable=True)
    updated_at: Mapped[float] = mapped_column(Double, index=True)
