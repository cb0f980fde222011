"""The app-scoped database handle: one engine and session factory per process."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

if TYPE_CHECKING:
    from streamchat.config import Settings
    from streamchat.pubsub import Store

__all__ = ["Database", "chat_store", "connect_args", "sqlite_setup"]

log = logging.getLogger("streamchat.store")

# Any constant works; it only has to be the same in every streamchat process.
_MIGRATION_LOCK_ID = 0x5C4A7


class Database:
    """Owns the engine; hands out sessions; migrates the schema.

    Create one per process (the app keeps it in its state) and ``await close()``
    on shutdown.
    """

    def __init__(self, url: str, *, echo: bool = False, statement_timeout: float = 10.0) -> None:
        self.url = make_url(url)
        kwargs: dict[str, Any] = {
            "echo": echo,
            "connect_args": connect_args(url, statement_timeout),
        }
        if self.is_sqlite:
            _ensure_parent_dir(self.url.database)
            # Each aiosqlite connection is a thread: keep a fixed set rather than open
            # and close overflow connections under every burst.
            if self.url.database not in (None, "", ":memory:"):
                kwargs.update(pool_size=10, max_overflow=0)
        else:
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.is_sqlite:
            setup = sqlite_setup(statement_timeout)
            event.listen(self.engine.sync_engine, "connect", lambda conn, _record: setup(conn))
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session whose transaction commits when the block ends without error."""
        async with self._sessions() as session, session.begin():
            yield session

    async def ping(self) -> None:
        """Raise unless the database answers a read of a real table (a lock on it shows)."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1 FROM streamers LIMIT 1"))

    async def migrate(self) -> None:
        """Bring the schema to the newest migration; safe with several processes at once."""
        async with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Serialise concurrent starts: the second waits, then finds nothing to do.
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID}
                )
            await conn.run_sync(_upgrade)

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn


def connect_args(url: str, statement_timeout: float) -> dict[str, Any]:
    """The driver's connection settings for ``url``: every engine on a database uses these
    (on SQLite, :func:`sqlite_setup` as well).

    No statement may hang for longer than ``statement_timeout`` seconds: on
    PostgreSQL the server cancels it (also while it waits for a lock), on SQLite
    a writer waits that long for the write lock, then fails.
    """
    backend = make_url(url).get_backend_name()
    if backend == "postgresql":
        ms = str(int(statement_timeout * 1000))
        return {
            "server_settings": {"statement_timeout": ms, "lock_timeout": ms},
            # A connection whose server went silent is given up on, too.
            "command_timeout": statement_timeout + 5,
        }
    return {}


def sqlite_setup(statement_timeout: float) -> Callable[[Any], None]:
    """The one set of SQLite pragmas, run on every new connection of every engine on the
    database (streamchat's tables and the chat store's).

    WAL, so readers never block the writer; ``synchronous=FULL``, so an acknowledged
    message survives a power cut, not only a crash; foreign keys enforced; and a writer
    waits up to ``statement_timeout`` seconds for another's lock.
    """
    pragmas = (
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=FULL",
        "PRAGMA foreign_keys=ON",
        f"PRAGMA busy_timeout={int(statement_timeout * 1000)}",
    )

    def setup(dbapi_connection: Any) -> None:
        cursor = dbapi_connection.cursor()
        for pragma in pragmas:
            cursor.execute(pragma)
        cursor.close()

    return setup


def chat_store(settings: Settings) -> str | Store:
    """The chat history's store, on the database's connection settings.

    On streamchat's own database its tables are created by the migrations, like every
    other table; a store in another SQL database creates its own.
    """
    url = settings.chat_store_url
    if url.split("://", 1)[0].split("+", 1)[0] not in ("sqlite", "postgresql", "postgres"):
        return url
    from streamchat.pubsub.backends.stores.sql import SQLStore

    own_database = settings.store_url in (None, settings.database_url)
    return SQLStore(
        url,
        create_tables=not own_database,
        on_connect=sqlite_setup(settings.db_statement_timeout),
        engine_options={"connect_args": connect_args(url, settings.db_statement_timeout)},
    )


def _upgrade(connection: Any) -> None:
    from alembic import command

    from streamchat.store.migrations import alembic_config

    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _ensure_parent_dir(database: str | None) -> None:
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
