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
