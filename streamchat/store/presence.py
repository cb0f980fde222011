"""Who is in which room, across every server process."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from streamchat.store.database import Database
from streamchat.store.models import RoomPresence, User, utcnow

__all__ = ["PresenceStore"]

# Rows per statement: well within SQLite's limits on parameters and expression depth.
_CHUNK = 200


class PresenceStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def sync(
        self,
        node_id: str,
        *,
        joined: Iterable[tuple[str, str]],
        left: Iterable[tuple[str, str]],
        ttl: timedelta,
        refresh: bool = True,
    ) -> None:
        """Record this node's ``(room, user_id)`` changes.

        With ``refresh``, also push the expiry of all of this node's rows forward:
        a node does that every so often, not with every change. The rows of
        nodes that died are left to expire (the presence janitor deletes them).
        """
        now = utcnow()
        joined_rows = [
            {"room": room, "user_id": user, "node_id": node_id, "expires_at": now + ttl}
            for room, user in joined
        ]
        left_rows = [{"r": room, "u": user, "n": node_id} for room, user in left]
        dialect = sqlite if self._db.is_sqlite else postgresql
        async with self._db.connect() as conn, conn.begin():
            if left_rows:
                # One statement run for each row (executemany): each finds its row
                # by primary key, where a row-value IN makes SQLite scan the table.
                await conn.execute(
                    delete(RoomPresence).where(
                        RoomPresence.room == bindparam("r"),
                        RoomPresence.user_id == bindparam("u"),
                        RoomPresence.node_id == bindparam("n"),
                    ),
                    left_rows,
                )
            # Chunked: a mass join (a restart) must not build one giant statement.
            for start in range(0, len(joined_rows), _CHUNK):
                stmt = dialect.insert(RoomPresence).values(joined_rows[start : start + _CHUNK])
                await conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["room", "user_id", "node_id"],
                        set_={"expires_at": stmt.excluded.expires_at},
                    )
                )
            if refresh:
                await conn.execute(
                    update(RoomPresence)
                    .where(RoomPresence.node_id == node_id)
                    .values(expires_at=now + ttl)
                )

    async def users(self, room: str, *, exclude_node: str | None = None) -> list[User]:
        """The users present in ``room`` on live nodes (other than ``exclude_node``)."""
        query = (
            select(User)
            .join(RoomPresence, RoomPresence.user_id == User.twitch_id)
            .where(RoomPresence.room == room, RoomPresence.expires_at > utcnow())
            .distinct()
        )
        if exclude_node is not None:
            query = query.where(RoomPresence.node_id != exclude_node)
        async with self._db.session() as session:
            return list(await session.scalars(query))

    async def clear_node(self, node_id: str) -> None:
        async with self._db.session() as session:
            await session.execute(delete(RoomPresence).where(RoomPresence.node_id == node_id))
