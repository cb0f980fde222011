"""Server-side login sessions: created at login, resolved per request, revocable."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select

from streamchat.batching import BatchedLookup
from streamchat.store.database import Database
from streamchat.store.models import Session, User, utcnow

__all__ = ["NewSession", "SessionStore", "session_key"]


def session_key(token: str) -> str:
    """The stored key of a session token (its SHA-256, hex)."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class NewSession:
    token: str
    #: Keys of the user's older sessions that this one pushed out.
    revoked: list[str]


class SessionStore:
    """Sessions live in the database, so they survive restarts and span processes."""

    def __init__(self, db: Database, *, ttl: timedelta, max_per_user: int = 10) -> None:
        self._db = db
        self._ttl = ttl
        self._max_per_user = max_per_user
        # Every request and WebSocket handshake asks: a burst of them shares a query.
        self._users = BatchedLookup(self._users_of)

    async def close(self) -> None:
        """Stop a lookup in flight; call before closing the database."""
        await self._users.close()

    async def create(self, user_id: str) -> NewSession:
        """Start a session for ``user_id``: the opaque token for the cookie, and the keys of
        the user's oldest sessions it pushed out (beyond ``max_per_user``)."""
        token = secrets.token_urlsafe(32)  # 256 bits
        now = utcnow()
        async with self._db.session() as session:
            # Expired rows are dead weight; sweeping on login keeps the table small
            # without a background job (the expiry index makes this cheap).
            await session.execute(delete(Session).where(Session.expires_at <= now))
            session.add(
                Session(
                    token_hash=session_key(token),
                    user_id=user_id,
                    created_at=now,
                    expires_at=now + self._ttl,
                )
            )
            await session.flush()
            # A login storm must not leave one user with hundreds of live sessions.
            keys = await session.scalars(
                select(Session.token_hash)
                .where(Session.user_id == user_id)
                .order_by(Session.created_at.desc(), Session.token_hash)
                .offset(self._max_per_user)
            )
            revoked = list(keys)
            if revoked:
                await session.execute(delete(Session).where(Session.token_hash.in_(revoked)))
        return NewSession(token, revoked)

    async def alive(self, keys: list[str]) -> set[str]:
        """Which of these session keys belong to live sessions."""
        alive: set[str] = set()
        async with self._db.session() as session:
            # Chunks keep each statement well under the databases' parameter limits.
            for start in range(0, len(keys), 1000):
                rows = await session.scalars(
                    select(Session.token_hash).where(
                        Session.token_hash.in_(keys[start : start + 1000]),
                        Session.expires_at > utcnow(),
                    )
                )
                alive.update(rows)
        return alive

    async def resolve(self, token: str) -> User | None:
        """The user of a live session, or ``None`` for an unknown or expired token."""
        return await self._users.get(session_key(token))

    async def _users_of(self, keys: Collection[str]) -> dict[str, User]:
        query = (
            select(
                Session.token_hash,
                User.twitch_id,
                User.login,
                User.display_name,
                User.profile_image_url,
                User.favorite_streamer_id,
                User.created_at,
            )
            .join(Session, Session.user_id == User.twitch_id)
            .where(Session.token_hash.in_(list(keys)), Session.expires_at > utcnow())
        )
        # One plain read on a pooled connection, without an ORM session around it.
        async with self._db.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {
            row.token_hash: User(
                twitch_id=row.twitch_id,
                login=row.login,
                display_name=row.display_name,
                profile_image_url=row.profile_image_url,
                favorite_streamer_id=row.favorite_streamer_id,
                created_at=row.created_at,
            )
            for row in rows
        }

    async def revoke(self, token: str) -> bool:
        """End the session; return whether it existed."""
        async with self._db.session() as session:
            result = await session.execute(
                delete(Session).where(Session.token_hash == session_key(token))
            )
            return bool(getattr(result, "rowcount", 0))
