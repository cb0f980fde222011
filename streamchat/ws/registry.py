"""Every connection of this process, by session, and the end of sessions on every process."""

from __future__ import annotations

import asyncio
import logging

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
        # Open connections (handshakes included) per client address and per user.
        self._by_address: dict[str, int] = {}
        self._by_user: dict[str, int] = {}

    def __len__(self) -> int:
        return self._count

    def admit_address(self, address: str, limit: int) -> bool:
        """Count a connection from ``address`` unless it has ``limit`` already."""
        return _admit(self._by_address, address, limit)

    def admit_user(self, user_id: str, limit: int) -> bool:
        """Count a connection of ``user_id`` unless they have ``limit`` already."""
        return _admit(self._by_user, user_id, limit)

    def release(self, address: str | None, user_id: str | None) -> None:
        """Uncount what :meth:`admit_address` and :meth:`admit_user` counted."""
        if address is not None:
            _release(self._by_address, address)
        if user_id is not None:
            _release(self._by_user, user_id)

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
        await self._pubsub.listen(
            SESSIONS_CHANNEL,
            lambda message: self._close_session(message.payload.decode(errors="replace")),
        )

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


def _admit(counts: dict[str, int], key: str, limit: int) -> bool:
    count = counts.get(key, 0)
    if count >= limit:
        return False
    counts[key] = count + 1
    return True


def _release(counts: dict[str, int], key: str) -> None:
    count = counts.get(key, 0) - 1
    if count > 0:
        counts[key] = count
    else:
        counts.pop(key, None)
