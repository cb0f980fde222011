"""Queries over streamers and their stream state."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import bindparam, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from streamchat.store.database import Database
from streamchat.store.models import Streamer, utcnow

__all__ = ["STREAM_FIELDS", "StreamerStore"]

# Logins are [A-Za-z0-9_]{1,25}; IDs are digits, which that covers too.
_REF = re.compile(r"[A-Za-z0-9_]{1,25}")

#: What the live status of a stream is made of.
STREAM_FIELDS = (
    "live",
    "title",
    "game_id",
    "game_name",
    "viewer_count",
    "started_at",
    "language",
)

_UPDATABLE = (
    "login",
    "display_name",
    "description",
    "profile_image_url",
    "offline_image_url",
    "broadcaster_type",
    *STREAM_FIELDS,
    "updated_at",
)


class StreamerStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def all(self) -> list[Streamer]:
        """Every streamer: live ones first by audience, then the rest by login."""
        async with self._db.session() as session:
            rows = await session.scalars(
                select(Streamer).order_by(
                    Streamer.live.desc(), Streamer.viewer_count.desc(), Streamer.login
                )
            )
            return list(rows)

    async def find(self, ref: str) -> Streamer | None:
        """A streamer by login (any case) or by Twitch ID."""
        if not _REF.fullmatch(ref):
            # Cannot name a streamer; and PostgreSQL rejects some strings (NUL) outright.
            return None
        async with self._db.session() as session:
            return await session.scalar(
                select(Streamer).where(or_(Streamer.login == ref.lower(), Streamer.id == ref))
            )

    async def ids_by_login(self, logins: Iterable[str]) -> dict[str, str]:
        """The IDs of the streamers with these exact logins (lowercase), by login."""
        wanted = [login for login in logins if _REF.fullmatch(login)]
        if not wanted:
            return {}
        async with self._db.connect() as conn:
            rows = await conn.execute(
                select(Streamer.login, Streamer.id).where(Streamer.login.in_(wanted))
            )
            return {row.login: row.id for row in rows}

    async def get(self, streamer_id: str) -> Streamer | None:
        async with self._db.session() as session:
            return await session.get(Streamer, streamer_id)

    async def count(self) -> int:
        async with self._db.session() as session:
            return int(await session.scalar(select(func.count()).select_from(Streamer)) or 0)

    async def upsert(self, rows: Iterable[dict[str, Any]]) -> int:
        """Insert or update streamers by ID; return how many rows were written."""
        # Rows may carry different columns (an offline stream keeps its last title),
        # so each set of columns is its own statement.
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:
            values = {**row, "updated_at": utcnow()}
            groups.setdefault(tuple(sorted(values)), []).append(values)
        dialect = sqlite if self._db.is_sqlite else postgresql
        async with self._db.session() as session:
            for columns, values_list in groups.items():
                stmt = dialect.insert(Streamer).values(values_list)
                stmt = stmt.on_conflict_do_update(
                    index_elements=[Streamer.id],
                    set_={name: stmt.excluded[name] for name in columns if name in _UPDATABLE},
                )
                await session.execute(stmt)
        return sum(len(v) for v in groups.values())

    async def delete(self, login: str) -> bool:
        """Remove the streamer of ``login``; False if there was none."""
        async with self._db.session() as session:
            result = await session.execute(delete(Streamer).where(Streamer.login == login.lower()))
        return bool(getattr(result, "rowcount", 0))

    async def set_streams(self, changes: dict[str, dict[str, Any]]) -> None:
        """Write the stream status (:data:`STREAM_FIELDS`) of these streamers, by ID, at once."""
        if not changes:
            return
        rows = [
            {"sid": streamer_id, **{f"v_{name}": values[name] for name in STREAM_FIELDS}}
            for streamer_id, values in changes.items()
        ]
        stmt = (
            update(Streamer)
            .where(Streamer.id == bindparam("sid"))
            .values(
                {
                    **{
                        name: bindparam(f"v_{name}", type_=Streamer.__table__.c[name].type)
                        for name in STREAM_FIELDS
                    },
                    "updated_at": utcnow(),
                }
            )
        )
        async with self._db.connect() as conn, conn.begin():
            await conn.execute(stmt, rows)
