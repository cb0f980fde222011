from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from streamchat.store.database import Database
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
        assert {"users", "sessions", "streamers"} <= tables
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
