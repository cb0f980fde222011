"""What only the SQL store does: its tables, created safely by racing processes."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from streamchat.pubsub.backends.stores.sql import SQLStore

from .conftest import Combo, finish, run_publisher


@pytest.fixture(params=["sqlite", "postgres"])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    prefix = f"race{uuid.uuid4().hex[:8]}_"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'race.db'}?table_prefix={prefix}"
    base = str(request.getfixturevalue("postgres_database"))
    return f"{base}?table_prefix={prefix}"


async def test_two_processes_create_the_tables_and_publish_at_once(sql_url: str) -> None:
    channel = f"room:{uuid.uuid4().hex}"
    combo = Combo("memory", "sql", "memory://", sql_url)
    processes = [await run_publisher(combo, channel, 40, tag) for tag in "ab"]
    for process in processes:
        await finish(process)
    store = SQLStore(sql_url)
    await store.connect()
    try:
        messages = await store.read(channel, limit=200)
        assert [m.seq for m in messages] == list(range(1, 81))
        assert len({m.epoch for m in messages}) == 1
        async with store.engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
        assert {f"{store.table_prefix}channels", f"{store.table_prefix}messages"} <= set(tables)
    finally:
        await store.disconnect()


async def test_connect_is_idempotent(sql_url: str) -> None:
    stores = [SQLStore(sql_url) for _ in range(3)]
    await asyncio.gather(*(store.connect() for store in stores))
    try:
        message, created = await stores[0].append("c", b"x", dedupe_key="k")
        assert created
        assert await stores[2].append("c", b"y", dedupe_key="k") == (message, False)
    finally:
        for store in stores:
            await store.disconnect()


async def test_concurrent_appends_are_group_committed(sql_url: str) -> None:
    store = SQLStore(sql_url)
    await store.connect()
    commits = 0
    original = store._commit

    async def counting(batch: list[object]) -> object:
        nonlocal commits
        commits += 1
        return await original(batch)  # type: ignore[arg-type]

    store._commit = counting  # type: ignore[method-assign]
    try:
        appends = [store.append(f"ch{i % 3}", f"m{i}".encode()) for i in range(300)]
        results = await asyncio.gather(*appends)
        assert all(created for _, created in results)
        for channel in ("ch0", "ch1", "ch2"):
            mine = [m for m, _ in results if m.channel == channel]
            # Each channel's seqs follow the order the appends were made in.
            assert [m.seq for m in mine] == list(range(1, 101))
            assert [m.payload for m in mine] == [
                f"m{i}".encode() for i in range(300) if f"ch{i % 3}" == channel
            ]
            stored = await store.read(channel, limit=200)
            assert [(m.seq, m.payload) for m in stored] == [(m.seq, m.payload) for m in mine]
        # Far fewer transactions than messages: they queued behind each other.
        assert commits < 30
    finally:
        await store.disconnect()


async def test_dedupe_keys_within_and_across_batches(sql_url: str) -> None:
    store = SQLStore(sql_url)
    await store.connect()
    try:
        earlier, created = await store.append("c", b"first", dedupe_key="a")
        assert created
        results = await asyncio.gather(
            store.append("c", b"again", dedupe_key="a"),
            store.append("c", b"new", dedupe_key="b"),
            store.append("c", b"plain"),
            store.append("c", b"twice", dedupe_key="b"),
            store.append("d", b"other channel", dedupe_key="b"),
        )
        assert results[0] == (earlier, False)
        new, created_new = results[1]
        assert created_new
        assert results[3] == (new, False)
        assert results[2][1]
        assert results[2][0].seq == new.seq + 1
        assert results[4][1]
        assert results[4][0].seq == 1
        assert [m.payload for m in await store.read("c")] == [b"first", b"new", b"plain"]
    finally:
        await store.disconnect()


async def test_appends_in_flight_are_stored_on_disconnect(sql_url: str) -> None:
    store = SQLStore(sql_url)
    await store.connect()
    pending = [asyncio.ensure_future(store.append("c", f"m{i}".encode())) for i in range(50)]
    await asyncio.sleep(0)
    await store.disconnect()
    results = await asyncio.gather(*pending)
    assert [m.seq for m, _ in results] == list(range(1, 51))
    reopened = SQLStore(sql_url)
    await reopened.connect()
    try:
        assert len(await reopened.read("c", limit=100)) == 50
    finally:
        await reopened.disconnect()
