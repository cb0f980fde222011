"""Presence: which logged-in users are subscribed to a room, on every process.

Each process counts its own subscriptions in memory and writes the changes to
the database in the background, at most once per ``flush_interval``, so a burst
of subscriptions costs one transaction rather than one each. Its rows carry an
expiry it keeps pushing forward; a process that dies stops counting once its
rows expire.

Whoever must not act before a change is stored (a ``join`` notice, after which
anyone may ask who is here) awaits :meth:`PresenceTracker.persisted`, which
also cuts the wait for the next write short: the changes of everyone waiting
meanwhile go in that one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from datetime import timedelta

from streamchat.backoff import Backoff
from streamchat.protocol import UserRef
from streamchat.store.presence import PresenceStore

__all__ = ["PresenceTracker"]

log = logging.getLogger("streamchat.rooms")

#: Seconds between two writes brought forward by waiters (see :meth:`persisted`).
_URGENT_SPACING = 0.1
#: With more changes than this waiting, a write is not brought forward.
_URGENT_AT_MOST = 64


class PresenceTracker:
    def __init__(
        self,
        store: PresenceStore,
        *,
        node_id: str | None = None,
        ttl: float = 30.0,
        flush_interval: float = 1.0,
    ) -> None:
        self.node_id = node_id or str(uuid.uuid4())
        self._store = store
        self._ttl = timedelta(seconds=ttl)
        self._flush_interval = flush_interval
        # room -> user id -> (user, number of this process's subscriptions)
        self._local: dict[str, dict[str, tuple[UserRef, int]]] = {}
        self._joined: set[tuple[str, str]] = set()
        self._left: set[tuple[str, str]] = set()
        self._dirty = asyncio.Event()
        # Writes are numbered: those handed to the store, those it has taken; each
        # waiter of persisted() waits for the write numbered in its entry.
        self._writes_started = 0
        self._writes_done = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._urgent = asyncio.Event()
        # When this node's rows were last given a new expiry (monotonic seconds).
        self._refreshed = -math.inf

    def add(self, room: str, user: UserRef) -> bool:
        """Count a subscription; return whether it is the user's first here."""
        users = self._local.setdefault(room, {})
        _, count = users.get(user.id, (user, 0))
        users[user.id] = (user, count + 1)
        if count:
            return False
        self._left.discard((room, user.id))
        self._joined.add((room, user.id))
        self._dirty.set()
        return True

    def remove(self, room: str, user: UserRef) -> bool:
        """Count a subscription gone; return whether it was the user's last here."""
        users = self._local.get(room)
        if users is None or user.id not in users:
            return False
        ref, count = users[user.id]
        if count > 1:
            users[user.id] = (ref, count - 1)
            return False
        del users[user.id]
        if not users:
            del self._local[room]
        self._joined.discard((room, user.id))
        self._left.add((room, user.id))
        self._dirty.set()
        return True

    def local_count(self, room: str) -> int:
        """Users present in ``room`` through this process (others' are not counted:
        this is asked on every join, and must not cost a query)."""
        return len(self._local.get(room, ()))

    async def users(self, room: str) -> list[UserRef]:
        """Everyone present in ``room``: this process's users, then the others'."""
        here = {user_id: ref for user_id, (ref, _) in self._local.get(room, {}).items()}
        for user in await self._store.users(room, exclude_node=self.node_id):
            here.setdefault(user.twitch_id, UserRef(user.twitch_id, user.login, user.display_name))
        return list(here.values())

    async def persisted(self) -> None:
        """Wait until every change counted so far is in the database.

        Needs :meth:`run` (or calls of :meth:`flush`) to make progress; a caller
        that must not wait forever puts a timeout around it.
        """
        # Changes not yet handed to the store go in the next write; otherwise the
        # write in flight (if any) holds them.
        write = self._writes_started + (1 if self._joined or self._left else 0)
        if write <= self._writes_done:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((write, future))
        # A storm of changes (every client back after a restart) waits for the paced
        # write: bringing writes forward then would cost the handshakes their time.
        if len(self._joined) + len(self._left) <= _URGENT_AT_MOST:
            self._urgent.set()
        self._dirty.set()
        await future

    async def flush(self) -> None:
        self._writes_started += 1
        write = self._writes_started
        joined, self._joined = self._joined, set()
        left, self._left = self._left, set()
        # Rows are written with a full TTL; all of them are pushed forward only
        # every third of it, not with each burst of changes.
        now = time.monotonic()
        refresh = now - self._refreshed >= self._ttl.total_seconds() / 3
        try:
            await self._store.sync(
                self.node_id, joined=joined, left=left, ttl=self._ttl, refresh=refresh
            )
            if refresh:
                self._refreshed = now
        except BaseException:
            # The retry is a later write, which waiters of this one also wait for.
            # Keep the changes for the next attempt (unless superseded meanwhile).
            self._joined |= {key for key in joined if key not in self._left}
            self._left |= {key for key in left if key not in self._joined}
            raise
        self._writes_done = max(self._writes_done, write)
        waiting, self._waiters = self._waiters, []
        for wanted, future in waiting:
            if wanted > self._writes_done:
                self._waiters.append((wanted, future))
            elif not future.done():
                future.set_result(None)

    async def run(self) -> None:
        """Write changes as they come and refresh the expiry, until cancelled."""
        refresh = self._ttl.total_seconds() / 3
        failures = 0
        while True:
            try:
                async with asyncio.timeout(refresh):
                    await self._dirty.wait()
            except TimeoutError:
                pass  # nothing changed: still refresh our rows' expiry
            self._dirty.clear()
            began = time.monotonic()
            try:
                await self.flush()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                log.exception("presence: writing this node's rows failed (%d)", failures)
                self._dirty.set()
                await Backoff(first=2 * self._flush_interval, cap=10.0).wait(failures)
                continue
            # At most one write per interval; when someone waits for one (and there is
            # no storm of changes, see persisted), one per _URGENT_SPACING.
            if not self._urgent.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._flush_interval):
                        await self._urgent.wait()
            self._urgent.clear()
            if (spacing := began + _URGENT_SPACING - time.monotonic()) > 0:
                await asyncio.sleep(spacing)

    async def close(self) -> None:
        try:
            await self._store.clear_node(self.node_id)
        except Exception:
            log.exception("presence: could not remove this node's rows; they will expire")
