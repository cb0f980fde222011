"""Moderation, stored: moderators, bans and timeouts, chat modes and the audit log."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from streamchat.store.database import Database
from streamchat.store.models import (
    ModerationEntry,
    RoomBan,
    RoomModerator,
    RoomSettings,
    utcnow,
)

__all__ = ["MAX_TERMS", "ModerationStore", "RoomRules"]

#: Blocked terms a room may hold.
MAX_TERMS = 1000
# Rooms per query: well within SQLite's limit on parameters.
_CHUNK = 200


@dataclass(frozen=True, slots=True)
class RoomRules:
    """A room's moderation at one moment: who moderates it, who may not chat, its modes."""

    room_id: str
    moderators: frozenset[str] = frozenset()
    #: user ID -> when the timeout ends; None for a ban.
    bans: dict[str, datetime | None] = field(default_factory=dict)
    slow_seconds: int = 0
    unique_chat: bool = False
    blocked_terms: tuple[str, ...] = ()

    def modes(self) -> dict[str, Any]:
        """Every mode's value, as ``room_state`` frames and the room's page show them."""
        return {
            "slow": self.slow_seconds,
            "unique": self.unique_chat,
            "blocked_terms": len(self.blocked_terms),
        }


class ModerationStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def _insert(self) -> Any:
        return (sqlite if self._db.is_sqlite else postgresql).insert

    async def rules_many(self, room_ids: Iterable[str]) -> dict[str, RoomRules]:
        """The rooms' rules now (timeouts that ended left out), in three queries: the first
        subscriptions of a restart ask for many rooms at once. Every room asked for is in
        the result."""
        wanted = list(dict.fromkeys(room_ids))
        moderators: dict[str, set[str]] = {room: set() for room in wanted}
        bans: dict[str, dict[str, datetime | None]] = {room: {} for room in wanted}
        settings: dict[str, RoomSettings] = {}
        now = utcnow()
        async with self._db.session() as session:
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                for mod in await session.execute(
                    select(RoomModerator.room_id, RoomModerator.user_id).where(
                        RoomModerator.room_id.in_(chunk)
                    )
                ):
                    moderators[mod.room_id].add(mod.user_id)
                for row in await session.execute(
                    select(RoomBan.room_id, RoomBan.user_id, RoomBan.expires_at).where(
                        RoomBan.room_id.in_(chunk),
                        or_(RoomBan.expires_at.is_(None), RoomBan.expires_at > now),
                    )
                ):
                    bans[row.room_id][row.user_id] = row.expires_at
                for found in await session.scalars(
                    select(RoomSettings).where(RoomSettings.room_id.in_(chunk))
                ):
                    settings[found.room_id] = found
        out: dict[str, RoomRules] = {}
        for room in wanted:
            modes = settings.get(room)
            out[room] = RoomRules(
                room,
                moderators=frozenset(moderators[room]),
                bans=bans[room],
                slow_seconds=modes.slow_seconds if modes else 0,
                unique_chat=modes.unique_chat if modes else False,
                blocked_terms=tuple(json.loads(modes.blocked_terms)) if modes else (),
            )
        return out

    # -- roles --

    async def add_moderator(self, room_id: str, user_id: str, *, by: str) -> bool:
        """Make ``user_id`` a moderator; False if they were one already."""
        stmt = (
            self._insert()(RoomModerator)
            .values(room_id=room_id, user_id=user_id, added_by=by, created_at=utcnow())
            .on_conflict_do_nothing()
        )
        async with self._db.connect() as conn, conn.begin():
            result = await conn.execute(stmt)
        return bool(result.rowcount)

    async def remove_moderator(self, room_id: str, user_id: str) -> bool:
        stmt = delete(RoomModerator).where(
            RoomModerator.room_id == room_id, RoomModerator.user_id == user_id
        )
        async with self._db.connect() as conn, conn.begin():
            result = await conn.execute(stmt)
        return bool(result.rowcount)

    # -- bans and timeouts --

    async def ban(
        self, room_id: str, user_id: str, *, until: datetime | None, reason: str, by: str
    ) -> None:
        """Ban (``until`` None) or time out ``user_id``, replacing what held before."""
        values = {"expires_at": until, "reason": reason, "banned_by": by, "created_at": utcnow()}
        stmt = (
            self._insert()(RoomBan)
            .values(room_id=room_id, user_id=user_id, **values)
            .on_conflict_do_update(index_elements=["room_id", "user_id"], set_=values)
        )
        async with self._db.connect() as conn, conn.begin():
            await conn.execute(stmt)

    async def unban(self, room_id: str, user_id: str, *, timeouts_only: bool = False) -> bool:
        """Lift the ban or timeout of ``user_id`` (only a timeout with ``timeouts_only``);
        False if there was none."""
        stmt = delete(RoomBan).where(RoomBan.room_id == room_id, RoomBan.user_id == user_id)
        if timeouts_only:
            stmt = stmt.where(RoomBan.expires_at.is_not(None))
        async with self._db.connect() as conn, conn.begin():
            result = await conn.execute(stmt)
        return bool(result.rowcount)

    # -- modes --

    async def set_modes(
        self,
        room_id: str,
        *,
        slow_seconds: int | None = None,
        unique_chat: bool | None = None,
        add_terms: Iterable[str] = (),
        remove_terms: Iterable[str] = (),
    ) -> None:
        """Change the room's modes; what is not given stays."""
        blank = (
            self._insert()(RoomSettings)
            .values(
                room_id=room_id,
                slow_seconds=0,
                unique_chat=False,
                blocked_terms="[]",
                updated_at=utcnow(),
            )
            .on_conflict_do_nothing()
        )
        async with self._db.session() as session:
            # The row exists first, so that two changes at once queue on its lock.
            await session.execute(blank)
            row = await session.get(RoomSettings, room_id, with_for_update=True)
            assert row is not None
            if slow_seconds is not None:
                row.slow_seconds = slow_seconds
            if unique_chat is not None:
                row.unique_chat = unique_chat
            terms = list(json.loads(row.blocked_terms or "[]"))
            removed = set(remove_terms)
            terms = [t for t in terms if t not in removed]
            for term in add_terms:
                if term not in terms:
                    terms.append(term)
            row.blocked_terms = json.dumps(terms[:MAX_TERMS])
            row.updated_at = utcnow()

    # -- the audit log --

    async def record(
        self,
        room_id: str,
        action: str,
        *,
        actor_id: str,
        target_id: str | None = None,
        seq: int | None = None,
        seconds: int | None = None,
        reason: str = "",
        details: dict[str, Any] | None = None,
    ) -> None:
        async with self._db.session() as session:
            session.add(
                ModerationEntry(
                    room_id=room_id,
                    action=action,
                    actor_id=actor_id,
                    target_id=target_id,
                    seq=seq,
                    seconds=seconds,
                    reason=reason,
                    details=json.dumps(details or {}),
                    created_at=utcnow(),
                )
            )

    async def log(
        self, room_id: str, *, before: int | None = None, limit: int = 50
    ) -> list[ModerationEntry]:
        """The newest ``limit`` entries (with ``id < before``), newest first."""
        stmt = select(ModerationEntry).where(ModerationEntry.room_id == room_id)
        if before is not None:
            stmt = stmt.where(ModerationEntry.id < before)
        stmt = stmt.order_by(ModerationEntry.id.desc()).limit(limit)
        async with self._db.session() as session:
            return list(await session.scalars(stmt))
