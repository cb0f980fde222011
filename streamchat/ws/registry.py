"""Every connection of this process, by session, and the end of sessions on every process."""

from __future__ import annotations

import asyncio
import logging
import random

from streamchat.pubsub import PubSub
from streamchat.store.sessions import SessionStore
from streamchat.ws.connection import CloseCode, Connection

__all__ = ["ConnectionRegistry"]

log = logging.getLogger("streamchat.ws")

#: Where a process announces a session that ended; every process listens.
SESSIONS_CHANNEL = "control:sessions-ended"


class ConnectionRegistry:
    """Closes the WebSockets of a session that ended, whichever process they are on.

    A logout is announced on :data:`SESSIONS_CHANNEL` and each process closes
    its connections of that session with 4001. Announcements are at most once,
    so each process also checks its sessions against the database every
    ``recheck_interval`` seconds, which catches a missed announcement and
    sessions that simply expired.
    """

    def __init__(
        self, pubsub: PubSub, sessions: SessionStore, *, recheck_interval: float = 30.0
    ) -> None:
        self._pubsub = pubsub
        self._sessions = sessions
        self._recheck_interval = recheck_interval
        self._by_session: dict[str, set[Connection]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, connection: Connection) -> None:
        self._count += 1
        if connection.session_key is not None:
            self._by_session.setdefault(connection.session_key, set()).add(connection)

    def discard(self, connection: Connection) -> None:
        self._count -= 1
        key = connection.session_key
        if key is not None and (group := self._by_session.get(key)) is not None:
            group.discard(connection)
            if not group:
                del self._by_session[key]

    async def end_session(self, key: str) -> None:
        """Tell every process (this one included) to close the session's connections."""
        await self._pubsub.publish(SESSIONS_CHANNEL, key.encode(), store=False)

    def _close_session(self, key: str) -> int:
        group = self._by_session.pop(key, set())
        for connection in group:
            connection.close(CloseCode.SESSION_ENDED, "session ended")
        return len(group)

    async def listen(self) -> None:
        """Close connections as their sessions end elsewhere, until cancelled."""
        failures = 0
        while True:
            try:
                async with self._pubsub.subscribe(SESSIONS_CHANNEL) as sub:
                    failures = 0
                    async for message in sub:
                        self._close_session(message.payload.decode(errors="replace"))
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                log.exception("listening for ended sessions failed (%d)", failures)
                await asyncio.sleep(min(10.0, 0.2 * 2**failures) * random.uniform(0.5, 1.0))

    async def recheck(self) -> None:
        """Every ``recheck_interval``, close connections whose session is gone."""
        while True:
            await asyncio.sleep(self._recheck_interval)
            keys = list(self._by_session)
            if not keys:
                continue
            try:
                alive = await self._sessions.alive(keys)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("checking sessions of open connections failed")
                continue
            for key in keys:
                if key not in alive and self._close_session(key):
                    log.info("closed the connections of an ended session")
