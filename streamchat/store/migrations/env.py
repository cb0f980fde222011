"""Alembic environment: runs on the connection streamchat hands in, or on a URL."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from streamchat.store.models import Base

config = context.config
target_metadata = Base.metadata


def _include_name(name: str | None, type_: str, _parent: object) -> bool:
    # Other tables in the database (the pub/sub store's) are not ours to diff.
    if type_ == "table":
        return name in target_metadata.tables
    return True


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_name=_include_name,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_on_url(url: str) -> None:
    from streamchat.store.database import Database

    db = Database(url)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(_run)
    finally:
        await db.close()


def _main() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        from streamchat.config import Settings

        url = Settings().database_url
    asyncio.run(_run_on_url(url))


_main()
