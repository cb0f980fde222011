"""Queries over viewers: registration and favourites."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from streamchat.errors import LoginTaken
from streamchat.store.database import Database
from streamchat.store.models import User, utcnow

__all__ = ["UserStore"]


class UserStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def register(
        self, twitch_id: str, *, login: str | None = None, display_name: str | None = None
    ) -> tuple[User, bool]:
        """Create the user unless the ID is known; return it and whether it is new.

        A single ``INSERT … ON CONFLICT DO NOTHING`` makes concurrent duplicates
        safe: exactly one of them inserts, the others read the row it wrote.
        """
        dialect = postgresql if not self._db.is_sqlite else sqlite
        values = {
            "twitch_id": twitch_id,
            "login": login.lower() if login else None,
            "display_name": display_name or login,
            "created_at": utcnow(),
        }
        async with self._db.session() as session:
            result = await session.execute(
                dialect.insert(User).values(**values).on_conflict_do_nothing()
            )
            created = bool(getattr(result, "rowcount", 0))
            user = await session.get(User, twitch_id)
        if user is None:
            # The insert hit the other unique key: the login belongs to someone else.
            raise LoginTaken(f"login {login!r} belongs to another user")
        return user, created

    async def sign_in(
        self, twitch_id: str, *, login: str, display_name: str, profile_image_url: str | None
    ) -> User:
        """Register a user Twitch vouched for, or bring their names and image up to date.

        Twitch is the truth about logins: one that moved to this user (renamed
        accounts free theirs) is taken from whoever held it before.
        """
        dialect = postgresql if not self._db.is_sqlite else sqlite
        login = login.lower()
        values = {
            "login": login,
            "display_name": display_name or login,
            "profile_image_url": profile_image_url or None,
        }
        async with self._db.session() as session:
            await session.execute(
                update(User)
                .where(User.login == login, User.twitch_id != twitch_id)
                .values(login=None)
            )
            insert = dialect.insert(User).values(twitch_id=twitch_id, created_at=utcnow(), **values)
            await session.execute(
                insert.on_conflict_do_update(index_elements=[User.twitch_id], set_=values)
            )
            user = await session.get(User, twitch_id, populate_existing=True)
        assert user is not None
        return user

    async def get(self, twitch_id: str) -> User | None:
        async with self._db.session() as session:
            return await session.get(User, twitch_id)

    async def find(self, login: str) -> User | None:
        """A user by login, in any case (logins are stored in lower case)."""
        async with self._db.session() as session:
            return await session.scalar(select(User).where(User.login == login.lower()))

    async def set_favorite(self, twitch_id: str, streamer_id: str | None) -> None:
        async with self._db.session() as session:
            await session.execute(
                update(User)
                .where(User.twitch_id == twitch_id)
                .values(favorite_streamer_id=streamer_id)
            )
