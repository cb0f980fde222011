from __future__ import annotations

from datetime import timedelta

from streamchat.store.database import Database
from streamchat.store.presence import PresenceStore
from streamchat.store.users import UserStore


async def test_mass_join_and_leave_in_one_sync(database_url: str) -> None:
    db = Database(database_url)
    try:
        await db.migrate()
        users = UserStore(db)
        ids = [str(700_000 + i) for i in range(1_200)]
        for user_id in ids:
            await users.register(user_id)
        store = PresenceStore(db)
        ttl = timedelta(seconds=30)
        await store.sync("node-a", joined=[("sablesignal", u) for u in ids], left=[], ttl=ttl)
        await store.sync("node-b", joined=[("sablesignal", ids[0])], left=[], ttl=ttl)
        assert len(await store.users("sablesignal")) == 1_200
        # A restart's worth of leaves at once.
        await store.sync("node-a", joined=[], left=[("sablesignal", u) for u in ids], ttl=ttl)
        assert [u.twitch_id for u in await store.users("sablesignal")] == [ids[0]]
        assert await store.users("sablesignal", exclude_node="node-b") == []
    finally:
        await db.close()


async def test_expiry_moves_only_on_refresh(database_url: str) -> None:
    db = Database(database_url)
    try:
        await db.migrate()
        await UserStore(db).register("700001")
        store = PresenceStore(db)
        await store.sync(
            "node-a", joined=[("refreshroom", "700001")], left=[], ttl=timedelta(seconds=30)
        )
        gone = timedelta(seconds=-1)  # a "refresh" that leaves the rows already expired
        await store.sync("node-a", joined=[], left=[], ttl=gone, refresh=False)
        assert [u.twitch_id for u in await store.users("refreshroom")] == ["700001"]
        await store.sync("node-a", joined=[], left=[], ttl=gone, refresh=True)
        assert await store.users("refreshroom") == []
    finally:
        await db.close()
