"""EventSub message ids already handled, so that a replayed webhook is not handled twice."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite

from streamchat.store.database import Database
from streamchat.store.models import EventSubMessage, utcnow

__all__ = ["EVENTSUB_WINDOW", "EventSubLog"]

#: Messages older than this are refused; their ids need not be kept longer.
EVENTSUB_WINDOW = timedelta(minutes=10)


class EventSubLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def first_time(self, message_id: str) -> bool:
        """Record ``message_id``; False when it was recorded before (a replay)."""
        dialect = postgresql if not self._db.is_sqlite else sqlite
        async with self._db.session() as session:
            result = await session.execute(
                dialect.insert(EventSubMessage)
                .values(message_id=message_id, received_at=utcnow())
                .on_conflict_do_nothing()
            )
        return bool(getattr(result, "rowcount", 0))

    async def forget(self, message_id: str) -> None:
        """Un-record a message that could not be handled, so that Twitch's retry is."""
        async with self._db.session() as session:
            await session.execute(
                delete(EventSubMessage).where(EventSubMessage.message_id == message_id)
            )
