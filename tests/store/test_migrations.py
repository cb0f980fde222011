from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from streamchat.config import Settings
from streamchat.pubsub import StoreError
from streamchat.pubsub.backends.stores.sql import SQLStore
from streamchat.store.database import Database, chat_store
from streamchat.store.models import Base


def _diff(connection: Any) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={
            "include_name": lambda name, type_, _p: type_ != "table" or name in Base.metadata.tables
        },
    )
    return list(compare_metadata(context, Base.metadata))


async def test_migrations_match_the_models(database_url: str) -> None:
    db = Database(database_url)
    try:
        await db.migrate()
        await db.migrate()  # a second run is a no-op
        async with db.connect() as conn:
            assert await conn.run_sync(_diff) == []
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
        assert {"users", "sessions", "streamers", "pubsub_channels", "pubsub_messages"} <= tables
        assert len(version) == 1
    finally:
        await db.close()


async def test_concurrent_starts_migrate_once(postgres_database: str) -> None:
    name = f"streamchat_mig_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(postgres_database)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = postgres_database.rsplit("/", 1)[0] + f"/{name}"
    dbs = [Database(url.replace("postgresql://", "postgresql+asyncpg://", 1)) for _ in range(4)]
    try:
        await asyncio.gather(*(db.migrate() for db in dbs))
        async with dbs[0].connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        for db in dbs:
            await db.close()
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


def _upgrade_to(revision: str) -> Any:
    from streamchat.store.migrations import alembic_config

    def run(connection: Any) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    return run


async def test_a_database_whose_store_made_its_own_tables_upgrades_keeping_them(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    db = Database(url)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(_upgrade_to("0003"))
        # As before the chat history came under the migrations: the store made its tables.
        standalone = SQLStore(url)
        await standalone.connect()
        stored, _ = await standalone.append("room:old", b"kept", dedupe_key="k1")
        await standalone.disconnect()

        await db.migrate()
        async with db.connect() as conn:
            assert await conn.run_sync(_diff) == []
        store = SQLStore(url, create_tables=False)
        await store.connect()
        try:
            assert await store.read("room:old", after=0) == [stored]
            assert await store.find("room:old", "k1") == stored
        finally:
            await store.disconnect()
    finally:
        await db.close()


async def test_a_store_told_not_to_create_its_tables_says_what_is_missing(
    tmp_path: Path,
) -> None:
    store = SQLStore(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}?create_tables=false")
    with pytest.raises(
        StoreError, match=r"tables are missing \(pubsub_channels, pubsub_messages\)"
    ):
        await store.connect()
    await store.disconnect()


def test_the_server_leaves_its_own_databases_tables_to_the_migrations(tmp_path: Path) -> None:
    main = f"sqlite+aiosqlite:///{tmp_path / 'main.db'}"
    own = chat_store(Settings(database_url=main))
    assert isinstance(own, SQLStore)
    assert not own.create_tables
    # A history kept in a database of its own: the store creates its tables there.
    apart = chat_store(
        Settings(database_url=main, store_url=f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}")
    )
    assert isinstance(apart, SQLStore)
    assert apart.create_tables
