"""PresenceTracker.persisted: a change counted is in the database when the wait ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from streamchat.protocol import UserRef
from streamchat.rooms.presence import PresenceTracker
from streamchat.store.database import Database
from streamchat.store.presence import PresenceStore
from streamchat.store.users import UserStore

ROOM = "sablesignal"
ALICE = UserRef("4001", "alice", "Alice")
BOB = UserRef("4002", "bob", "Bob")


@pytest.fixture
async def db(tmp_path: Any) -> AsyncIterator[Database]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'presence.db'}")
    await db.migrate()
    users = UserStore(db)
    for user in (ALICE, BOB):
        await users.register(user.id, login=user.login, display_name=user.display_name)
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture
def store(db: Database) -> PresenceStore:
    return PresenceStore(db)


class FailingStore(PresenceStore):
    """Fails its next ``sync`` calls, as a database going away would."""

    failures = 0

    async def sync(self, *args: Any, **kwargs: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError("the database went away")
        await super().sync(*args, **kwargs)


async def _ids(store: PresenceStore) -> list[str]:
    return sorted(user.twitch_id for user in await store.users(ROOM))


async def test_a_waiter_does_not_wait_out_the_flush_interval(store: PresenceStore) -> None:
    # An interval far longer than the test's timeout: only the waiter can explain a write.
    tracker = PresenceTracker(store, flush_interval=3600)
    runner = asyncio.create_task(tracker.run())
    try:
        tracker.add(ROOM, ALICE)
        async with asyncio.timeout(10):
            await tracker.persisted()
        assert await _ids(store) == ["4001"]
        tracker.add(ROOM, BOB)
        tracker.remove(ROOM, ALICE)
        async with asyncio.timeout(10):
            await tracker.persisted()
        assert await _ids(store) == ["4002"]
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


async def test_nothing_pending_returns_at_once(store: PresenceStore) -> None:
    tracker = PresenceTracker(store)  # no run(): nothing would ever write
    async with asyncio.timeout(1):
        await tracker.persisted()


async def test_a_failed_write_is_retried_and_its_waiters_wait_for_the_retry(
    store: PresenceStore, db: Database
) -> None:
    failing = FailingStore(db)
    failing.failures = 1
    tracker = PresenceTracker(failing, flush_interval=0.01)
    runner = asyncio.create_task(tracker.run())
    try:
        tracker.add(ROOM, ALICE)
        async with asyncio.timeout(10):
            await tracker.persisted()
        assert failing.failures == 0  # the first write failed …
        assert await _ids(store) == ["4001"]  # … and the wait ended with the retry's
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
