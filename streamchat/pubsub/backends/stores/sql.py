"""A store in any SQL database SQLAlchemy reaches asynchronously (SQLite, PostgreSQL).

Two tables (prefix ``pubsub_`` by default)::

    pubsub_channels(channel PK, epoch, last_seq)
    pubsub_messages(channel, seq, payload, created_at, dedupe_key)  PK (channel, seq),
        unique (channel, dedupe_key) where dedupe_key is not null

Standalone, the store creates them on ``connect`` if they are missing. An application
that migrates its schema with its own tool (streamchat uses Alembic) passes
``create_tables=False``, puts :func:`define_tables` in its metadata, and creates them in
a migration; ``connect`` then checks that they are there.

A publish increments the channel row's ``last_seq`` and inserts the message in one
transaction: the row lock serialises publishers of a channel across processes, and a
rolled-back insert rolls the increment back, so seqs have no gaps. A channel row that is
created (first use, or after the tables were truncated) gets a new random epoch.

Appends are group-committed: while one transaction commits, the appends that arrive
queue up, and the next transaction stores all of them, with one increment and one
multi-row insert per channel. A busy process pays for one commit (and one disk sync)
per batch instead of one per message; an idle one commits each message at once.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.schema import CreateIndex, CreateTable

from ..._errors import ConfigurationError, StoreError
from ..._message import Message
from .._options import boolean, option, positive_int
from ..base import Store

__all__ = ["SQLStore", "define_tables", "sqlite_busy_timeout"]

_B = TypeVar("_B")
_R = TypeVar("_R")

_DEFAULT_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
}
_OPTIONS = ("table_prefix", "max_messages", "create_tables")
_MAX_CHANNEL = 512
_LAST_MANY_CHUNK = 500
#: Appends stored by one transaction at most.
_MAX_BATCH = 500
#: Channels examined per query while looking for messages to prune.
_PRUNE_CHANNELS = 500


@dataclass(slots=True)
class _Append:
    channel: str
    payload: bytes
    dedupe_key: str | None
    future: asyncio.Future[tuple[Message, bool]]


def _engine_url(url: str) -> tuple[sa.URL, dict[str, str]]:
    scheme, sep, rest = url.partition("://")
    url = f"{_DEFAULT_DRIVERS.get(scheme.lower(), scheme)}{sep}{rest}"
    try:
        parsed = sa.make_url(url)
    except SQLAlchemyError as exc:
        raise ConfigurationError(f"invalid store URL: {exc}") from exc
    options = {key: str(parsed.query[key]) for key in _OPTIONS if key in parsed.query}
    return parsed.difference_update_query(_OPTIONS), options


class SQLStore(Store):
    """``sqlite+aiosqlite:///path.db``, ``postgresql+asyncpg://user@host/db`` and the like.

    Options, as keywords or in the URL's query: ``table_prefix`` (default ``pubsub_``) and
    ``max_messages`` (keep that many newest messages per channel; default: all).
    ``postgresql://`` and ``sqlite://`` get their asyncio driver.
    """

    def __init__(
        self,
        url: str,
        *,
        table_prefix: str | None = None,
        max_messages: int | None = None,
        engine_options: dict[str, Any] | None = None,
        create_tables: bool | None = None,
        on_connect: Callable[[Any], None] | None = None,
    ) -> None:
        engine_url, options = _engine_url(url)
        prefix = str(option(table_prefix, options, "table_prefix") or "pubsub_")
        if not prefix.replace("_", "a").isalnum() or not prefix.isascii() or prefix[:1].isdigit():
            raise ConfigurationError(f"table_prefix must be letters, digits and _, got {prefix!r}")
        self.table_prefix = prefix
        self.max_messages = positive_int(
            "max_messages", option(max_messages, options, "max_messages")
        )
        self.create_tables = boolean(
            "create_tables", option(create_tables, options, "create_tables"), True
        )
        # Run on every new DBAPI connection to SQLite: its pragmas.
        self._on_connect = on_connect or sqlite_busy_timeout(10.0)
        self._dialect = engine_url.get_backend_name()
        kwargs: dict[str, Any]
        if self._dialect == "sqlite" and _is_sqlite_file(engine_url):
            # A file cannot go stale, so no ping per checkout; and a fixed pool, since
            # every new aiosqlite connection is a new thread.
            kwargs = {"pool_size": 10, "max_overflow": 0}
        else:
            kwargs = {"pool_pre_ping": True}
        kwargs.update(engine_options or {})
        try:
            self._engine: AsyncEngine = create_async_engine(engine_url, **kwargs)
        except (SQLAlchemyError, ImportError) as exc:
            raise ConfigurationError(
                f"cannot build a store for {engine_url.render_as_string(hide_password=True)}: {exc}"
            ) from exc
        if self._dialect == "sqlite":
            event.listen(self._engine.sync_engine, "connect", self._on_sqlite_connect)
        # SQLite in a file: group commits run whole in one thread of their own, on a
        # connection of their own. Through aiosqlite, each statement of a commit is
        # several hand-overs between threads, each waiting for a busy event loop.
        self._writer = (
            _SQLiteWriter(engine_url, self._on_sqlite_connect)
            if self._dialect == "sqlite" and _is_sqlite_file(engine_url)
            else None
        )

        self._metadata = sa.MetaData()
        self.channels, self.messages = define_tables(self._metadata, prefix)

        self._statements = self._prepare_statements()
        self._queue: list[_Append] = []
        self._committer: asyncio.Task[None] | None = None
        # The channel after which the last prune stopped: the next goes on from there, so
        # calls repeated until one returns less than its limit pass each channel once.
        self._prune_after = ""

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            raise StoreError(f"{type(exc).__name__}: {exc}") from exc
        except OSError as exc:
            raise StoreError(f"database unreachable: {exc}") from exc

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction; SQLite takes its write lock up front (BEGIN IMMEDIATE).

        A deferred SQLite transaction that read first cannot wait for the write lock: it
        fails with "database is locked" at once when another process wrote meanwhile.
        """
        if self._dialect != "sqlite":
            async with self._engine.begin() as conn:
                yield conn
            return
        async with self._engine.connect() as conn:
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                await conn.rollback()
                raise
            await conn.commit()

    def _on_sqlite_connect(self, dbapi_connection: Any, _record: Any) -> None:
        self._on_connect(dbapi_connection)

    async def connect(self) -> None:
        """Create the tables and index if missing (safe when several processes start at
        once); with ``create_tables=False``, check that they are there."""
        if self._dialect == "sqlite":
            await self._use_wal()
        if not self.create_tables:
            await self._check_tables()
            return
        async with self._errors(), self._write() as conn:
            if self._dialect == "postgresql":
                # CREATE ... IF NOT EXISTS still races in PostgreSQL's catalogs; serialise it.
                key = zlib.crc32(f"streamchat.pubsub:{self.table_prefix}".encode())
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            for table in self._metadata.sorted_tables:
                await conn.execute(CreateTable(table, if_not_exists=True))
                for index in table.indexes:
                    await conn.execute(CreateIndex(index, if_not_exists=True))

    async def _check_tables(self) -> None:
        names = [table.name for table in self._metadata.sorted_tables]

        def missing(conn: sa.Connection) -> list[str]:
            inspector = sa.inspect(conn)
            return [name for name in names if not inspector.has_table(name)]

        async with self._errors(), self._engine.connect() as conn:
            absent = await conn.run_sync(missing)
        if absent:
            raise StoreError(
                f"the store's tables are missing ({', '.join(absent)}): run the application's "
                "migrations, or let the store create them (create_tables=True)"
            )

    async def _use_wal(self) -> None:
        """Switch the database file to WAL (persistent), so readers never block the writer.

        Switching needs an exclusive lock and fails at once, without waiting, while another
        process works on the file (two processes starting on a new file): retry briefly.
        """
        for attempt in range(50):
            try:
                async with self._engine.connect() as conn:
                    await conn.exec_driver_sql("PRAGMA journal_mode = WAL")
                return
            except OperationalError as exc:
                if "locked" not in str(exc) or attempt == 49:
                    raise StoreError(f"cannot switch SQLite to WAL: {exc}") from exc
                await asyncio.sleep(0.02 + random.random() * 0.05)

    async def disconnect(self) -> None:
        committer, self._committer = self._committer, None
        if committer is not None:
            # Let what was handed over be stored; a hung database is given up on.
            await asyncio.wait({committer}, timeout=10)
            if not committer.done():
                committer.cancel()
                await asyncio.wait({committer})
        if self._writer is not None:
            await self._writer.close()
        await self._engine.dispose()

    # -- writing --

    async def append(
        self, channel: str, payload: bytes, *, dedupe_key: str | None = None
    ) -> tuple[Message, bool]:
        future: asyncio.Future[tuple[Message, bool]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Append(channel, payload, dedupe_key, future))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_queue(), name="pubsub-sql-commit")
        return await future

    async def _commit_queue(self) -> None:
        """Store what is queued, a batch per transaction, until the queue is empty."""
        while self._queue:
            batch, self._queue = self._queue[:_MAX_BATCH], self._queue[_MAX_BATCH:]
            try:
                results = await self._commit(batch)
            except StoreError as exc:
                if isinstance(exc.__cause__, IntegrityError):
                    # Another process stored one of these dedupe keys meanwhile:
                    # take the batch one message at a time, each with its own check.
                    await self._commit_singly(batch)
                    continue
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
            except BaseException as exc:
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(StoreError(f"the write was interrupted: {exc!r}"))
                raise
            else:
                for item, result in zip(batch, results, strict=True):
                    if not item.future.done():
                        item.future.set_result(result)

    async def _commit_singly(self, batch: list[_Append]) -> None:
        for item in batch:
            try:
                result = await self._append_one(item.channel, item.payload, item.dedupe_key)
            except StoreError as exc:
                if not item.future.done():
                    item.future.set_exception(exc)
            else:
                if not item.future.done():
                    item.future.set_result(result)

    async def _commit(self, batch: list[_Append]) -> list[tuple[Message, bool]]:
        """Store ``batch`` in one transaction; the results are in the batch's order."""
        async with self._errors():
            if self._writer is not None:
                return await self._writer.run(self._commit_rows, batch)
            async with self._write() as conn:
                return await conn.run_sync(self._commit_rows, batch)

    def _commit_rows(self, conn: sa.Connection, batch: list[_Append]) -> list[tuple[Message, bool]]:
        """The work of :meth:`_commit`, inside its transaction (synchronous SQLAlchemy)."""
        messages = self.messages
        results: list[tuple[Message, bool] | None] = [None] * len(batch)
        now = time.time()
        # Dedupe keys stored before, or repeated within the batch, resolve to
        # the message that holds them.
        keyed = {(item.channel, item.dedupe_key) for item in batch if item.dedupe_key is not None}
        known = self._find_many(conn, keyed) if keyed else {}
        by_channel: dict[str, list[int]] = {}
        claimed: dict[tuple[str, str], int] = {}
        for index, item in enumerate(batch):
            if item.dedupe_key is not None:
                key = (item.channel, item.dedupe_key)
                if key in known or key in claimed:
                    continue
                claimed[key] = index
            by_channel.setdefault(item.channel, []).append(index)
        rows: list[dict[str, Any]] = []
        reserved = self._reserve(
            conn, {channel: len(indexes) for channel, indexes in by_channel.items()}
        )
        for channel, indexes in by_channel.items():
            epoch, last = reserved[channel]
            first = last - len(indexes) + 1
            for offset, index in enumerate(indexes):
                item = batch[index]
                seq = first + offset
                rows.append(
                    {
                        "channel": channel,
                        "seq": seq,
                        "payload": item.payload,
                        "created_at": now,
                        "dedupe_key": item.dedupe_key,
                    }
                )
                results[index] = (Message(channel, seq, item.payload, now, epoch), True)
            if self.max_messages is not None and last > self.max_messages:
                conn.execute(
                    messages.delete().where(
                        messages.c.channel == channel,
                        messages.c.seq <= last - self.max_messages,
                    )
                )
        if rows:
            conn.execute(self._statements["insert"], rows)
        for index, item in enumerate(batch):
            if results[index] is None:
                assert item.dedupe_key is not None
                key = (item.channel, item.dedupe_key)
                original = known.get(key)
                if original is None:
                    stored = results[claimed[key]]
                    assert stored is not None
                    original = stored[0]
                results[index] = (original, False)
        return [result for result in results if result is not None]

    def _find_many(
        self, conn: sa.Connection, keys: set[tuple[str, str]]
    ) -> dict[tuple[str, str], Message]:
        """The stored messages of these ``(channel, dedupe_key)`` pairs, in few queries."""
        found: dict[tuple[str, str], Message] = {}
        pairs = sorted(keys)
        for start in range(0, len(pairs), _LAST_MANY_CHUNK):
            chunk = pairs[start : start + _LAST_MANY_CHUNK]
            params = {
                "channels": list({channel for channel, _ in chunk}),
                "keys": list({key for _, key in chunk}),
            }
            for row in conn.execute(self._statements["find"], params):
                pair = (row[0], row[1])
                if pair in keys:
                    found[pair] = Message(
                        row[0], int(row[2]), bytes(row[3]), float(row[4]), str(row[5])
                    )
        return found

    def _prepare_statements(self) -> dict[str, Any]:
        """The group commit's statements, built once.

        Built per commit, SQLAlchemy's statement objects become reference cycles:
        at hundreds of commits a second, tens of thousands of objects for the
        garbage collector, whose pauses then show up as latency.
        """
        messages, channels = self.messages, self.channels
        statements: dict[str, Any] = {
            "insert": messages.insert(),
            "find": sa.select(
                messages.c.channel,
                messages.c.dedupe_key,
                messages.c.seq,
                messages.c.payload,
                messages.c.created_at,
                channels.c.epoch,
            )
            .join(channels, channels.c.channel == messages.c.channel)
            .where(
                # Two IN lists rather than a row-value IN: SQLite searches the
                # (channel, dedupe_key) index for the former and scans the table for the latter.
                messages.c.channel.in_(sa.bindparam("channels", expanding=True)),
                messages.c.dedupe_key.in_(sa.bindparam("keys", expanding=True)),
            ),
            # One channel's reservation: SQLite (in-process) runs one per channel.
            "reserve": channels.update()
            .where(channels.c.channel == sa.bindparam("name"))
            .values(last_seq=channels.c.last_seq + sa.bindparam("count", type_=sa.BigInteger))
            .returning(channels.c.channel, channels.c.epoch, channels.c.last_seq),
        }
        if self._dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import ARRAY

            # Every channel's reservation in one round trip, from two arrays.
            wanted = sa.select(
                sa.func.unnest(sa.bindparam("names", type_=ARRAY(sa.String))).label("name"),
                sa.func.unnest(sa.bindparam("counts", type_=ARRAY(sa.BigInteger))).label("count"),
            ).subquery("wanted")
            statements["reserve_many"] = (
                channels.update()
                .where(channels.c.channel == wanted.c.name)
                .values(last_seq=channels.c.last_seq + wanted.c.count)
                .returning(channels.c.channel, channels.c.epoch, channels.c.last_seq)
            )
        return statements

    def _reserve(self, conn: sa.Connection, counts: dict[str, int]) -> dict[str, tuple[str, int]]:
        """Reserve ``counts[channel]`` seqs of each channel.

        Returns each channel's epoch and the last seq reserved; channels without a
        row yet get one first.
        """
        reserved: dict[str, tuple[str, int]] = {}
        # In one order everywhere: two processes locking the same channels' rows in
        # different orders would deadlock.
        pending = dict(sorted(counts.items()))
        many = self._statements.get("reserve_many")
        for _ in range(2):
            if not pending:
                break
            if many is not None:
                rows = list(
                    conn.execute(many, {"names": list(pending), "counts": list(pending.values())})
                )
            else:
                one = self._statements["reserve"]
                rows = []
                for name, count in pending.items():
                    rows.extend(conn.execute(one, {"name": name, "count": count}))
            for row in rows:
                reserved[str(row[0])] = (str(row[1]), int(row[2]))
                pending.pop(str(row[0]), None)
            for channel in sorted(pending):
                self._create_channel(conn, channel)
        if pending:
            raise StoreError(f"could not create the rows of channels {sorted(pending)!r}")
        return reserved

    async def _append_one(
        self, channel: str, payload: bytes, dedupe_key: str | None
    ) -> tuple[Message, bool]:
        messages = self.messages
        # A retry only happens when the original of a dedupe_key was trimmed in between.
        for _ in range(3):
            try:
                async with self._errors(), self._write() as conn:
                    epoch, seq = await self._next_seq(conn, channel)
                    now = time.time()
                    await conn.execute(
                        messages.insert().values(
                            channel=channel,
                            seq=seq,
                            payload=payload,
                            created_at=now,
                            dedupe_key=dedupe_key,
                        )
                    )
                    if self.max_messages is not None and seq > self.max_messages:
                        await conn.execute(
                            messages.delete().where(
                                messages.c.channel == channel,
                                messages.c.seq <= seq - self.max_messages,
                            )
                        )
                return Message(channel, seq, payload, now, epoch), True
            except StoreError as exc:
                if dedupe_key is None or not isinstance(exc.__cause__, IntegrityError):
                    raise
            # The unique index caught a concurrent (or earlier) publish of the same key; the
            # transaction, and so the seq increment, was rolled back.
            original = await self._find(channel, dedupe_key)
            if original is not None:
                return original, False
        raise StoreError(f"channel {channel!r}: could not store the message of {dedupe_key!r}")

    def _increment(self, count: int) -> sa.Update:
        channels = self.channels
        return (
            channels.update()
            .values(last_seq=channels.c.last_seq + count)
            .returning(channels.c.epoch, channels.c.last_seq)
        )

    async def _next_seq(
        self, conn: AsyncConnection, channel: str, count: int = 1
    ) -> tuple[str, int]:
        """Reserve ``count`` seqs of ``channel``; return its epoch and the last of them."""
        stmt = self._increment(count).where(self.channels.c.channel == channel)
        row = (await conn.execute(stmt)).first()
        if row is None:
            await conn.run_sync(self._create_channel, channel)
            row = (await conn.execute(stmt)).one()
        return str(row[0]), int(row[1])

    def _create_channel(self, conn: sa.Connection, channel: str) -> None:
        """Insert the channel row with a new epoch, unless another transaction just did."""
        messages = self.messages
        # Start after any message left behind (a channel row deleted on its own), so the
        # (channel, seq) key never collides.
        start = sa.select(
            sa.literal(channel, sa.String),
            sa.literal(secrets.token_hex(8), sa.String),
            sa.func.coalesce(sa.func.max(messages.c.seq), 0),
        ).where(messages.c.channel == channel)
        columns = ["channel", "epoch", "last_seq"]
        if self._dialect == "postgresql":
            from sqlalchemy.dialects import postgresql

            stmt = postgresql.insert(self.channels).from_select(columns, start)
            conn.execute(stmt.on_conflict_do_nothing())
            return
        if self._dialect == "sqlite":
            from sqlalchemy.dialects import sqlite

            lite = sqlite.insert(self.channels).from_select(columns, start)
            conn.execute(lite.on_conflict_do_nothing())
            return
        try:
            with conn.begin_nested():
                conn.execute(self.channels.insert().from_select(columns, start))
        except IntegrityError:
            pass

    # -- reading --

    def _select(self) -> sa.Select[int, bytes, float, str]:
        messages, channels = self.messages, self.channels
        return sa.select(
            messages.c.seq, messages.c.payload, messages.c.created_at, channels.c.epoch
        ).join(channels, channels.c.channel == messages.c.channel)

    @staticmethod
    def _message(channel: str, row: sa.Row[int, bytes, float, str]) -> Message:
        return Message(channel, int(row[0]), bytes(row[1]), float(row[2]), str(row[3]))

    async def find(self, channel: str, dedupe_key: str) -> Message | None:
        return await self._find(channel, dedupe_key)

    async def _find(self, channel: str, dedupe_key: str) -> Message | None:
        stmt = self._select().where(
            self.messages.c.channel == channel, self.messages.c.dedupe_key == dedupe_key
        )
        async with self._errors(), self._engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else self._message(channel, row)

    async def read(self, channel: str, *, after: int = 0, limit: int = 100) -> list[Message]:
        seq = self.messages.c.seq
        stmt = (
            self._select()
            .where(self.messages.c.channel == channel, seq > after)
            .order_by(seq)
            .limit(limit)
        )
        async with self._errors(), self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [self._message(channel, row) for row in rows]

    async def history(
        self, channel: str, *, before: int | None = None, limit: int = 50
    ) -> list[Message]:
        seq = self.messages.c.seq
        stmt = self._select().where(self.messages.c.channel == channel)
        if before is not None:
            stmt = stmt.where(seq < before)
        stmt = stmt.order_by(seq.desc()).limit(limit)
        async with self._errors(), self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [self._message(channel, row) for row in reversed(rows)]

    async def last(self, channel: str) -> tuple[str, int]:
        channels = self.channels
        stmt = sa.select(channels.c.epoch, channels.c.last_seq).where(channels.c.channel == channel)
        async with self._errors():
            async with self._engine.connect() as conn:
                row = (await conn.execute(stmt)).first()
            if row is None:
                # Fix the epoch on first use, so a position taken now stays valid.
                async with self._write() as conn:
                    await conn.run_sync(self._create_channel, channel)
                    row = (await conn.execute(stmt)).one()
        return str(row[0]), int(row[1])

    async def last_many(self, channels: Iterable[str]) -> dict[str, tuple[str, int]]:
        names = list(channels)
        table = self.channels
        result: dict[str, tuple[str, int]] = {}
        async with self._errors(), self._engine.connect() as conn:
            for i in range(0, len(names), _LAST_MANY_CHUNK):
                chunk = names[i : i + _LAST_MANY_CHUNK]
                stmt = sa.select(table.c.channel, table.c.epoch, table.c.last_seq).where(
                    table.c.channel.in_(chunk)
                )
                for row in await conn.execute(stmt):
                    result[str(row[0])] = (str(row[1]), int(row[2]))
        return result

    # -- redaction --

    async def redact(
        self, channel: str, seqs: Iterable[int] = (), *, through: int | None = None
    ) -> list[int]:
        messages = self.messages
        wanted = sorted(set(seqs))
        chosen: list[sa.ColumnElement[bool]] = []
        if wanted:
            chosen.append(messages.c.seq.in_(wanted))
        if through is not None:
            chosen.append(messages.c.seq <= through)
        if not chosen:
            return []
        stmt = (
            messages.update()
            .where(
                messages.c.channel == channel,
                sa.or_(*chosen),
                sa.func.length(messages.c.payload) > 0,
            )
            .values(payload=b"")
            .returning(messages.c.seq)
        )
        async with self._errors(), self._write() as conn:
            rows = (await conn.execute(stmt)).all()
        return sorted(int(row[0]) for row in rows)

    # -- retention --

    async def prune(
        self, *, older_than: float | None = None, keep_last: int | None = None, limit: int = 1000
    ) -> int:
        """See :meth:`Store.prune`: finds what to delete without locks, then deletes it
        in one short transaction."""
        self._check_prune(older_than, keep_last, limit)
        async with self._errors():
            runs = await self._prune_plan(older_than, keep_last, limit)
            if not runs:
                return 0
            # Like a group commit, through the SQLite writer's thread: this process's
            # prunes and commits then take turns rather than poll for the write lock.
            if self._writer is not None:
                return await self._writer.run(self._prune_rows, runs)
            async with self._write() as conn:
                return await conn.run_sync(self._prune_rows, runs)

    async def _prune_plan(
        self, older_than: float | None, keep_last: int | None, limit: int
    ) -> list[tuple[str, int, int]]:
        """``(channel, first seq, last seq)`` runs to delete, ``limit`` messages at most.

        Read without locks: a message that qualifies stays qualified (it only ages, and
        its channel's last seq only grows), and messages appended meanwhile lie beyond
        every run. Per channel the oldest messages have the lowest seqs, so everything
        is found on the primary key: the channel's first message, then, for the age
        criterion, the first message to keep among the next ones.
        """
        channels, messages = self.channels, self.messages

        def first(column: sa.ColumnElement[_R]) -> sa.ScalarSelect[_R]:
            return (
                sa.select(column)
                .where(messages.c.channel == channels.c.channel)
                .order_by(messages.c.seq)
                .limit(1)
                .scalar_subquery()
            )

        page = (
            sa.select(
                channels.c.channel,
                channels.c.last_seq,
                first(messages.c.seq),
                first(messages.c.created_at),
            )
            .where(channels.c.channel > sa.bindparam("after", type_=sa.String))
            .order_by(channels.c.channel)
            .limit(_PRUNE_CHANNELS)
        )
        first_kept = (
            sa.select(messages.c.seq)
            .where(
                messages.c.channel == sa.bindparam("name", type_=sa.String),
                messages.c.seq > sa.bindparam("above", type_=sa.BigInteger),
                messages.c.seq <= sa.bindparam("upto", type_=sa.BigInteger),
                messages.c.created_at >= sa.bindparam("cutoff", type_=sa.Double),
            )
            .order_by(messages.c.seq)
            .limit(1)
        )
        runs: list[tuple[str, int, int]] = []
        budget = limit
        start = self._prune_after
        # Once round the channels, from where the previous call stopped.
        rounds = [(start, None), ("", start)] if start else [("", None)]
        async with self._engine.connect() as conn:
            for after, until in rounds:
                stmt = page if until is None else page.where(channels.c.channel <= until)
                while True:
                    rows = (await conn.execute(stmt, {"after": after})).all()
                    for name, last_seq, oldest, oldest_at in rows:
                        previous, after = after, name
                        # Messages up to seq `surplus` are beyond the newest keep_last.
                        surplus = last_seq - keep_last if keep_last is not None else 0
                        if oldest is None or (
                            oldest > surplus and (older_than is None or oldest_at >= older_than)
                        ):
                            continue
                        end = min(oldest + budget - 1, last_seq)
                        if end > surplus:
                            # Beyond the surplus, age decides: up to the first one to keep.
                            if older_than is None:
                                end = surplus
                            else:
                                params = {
                                    "name": name,
                                    "above": max(surplus, oldest),
                                    "upto": end,
                                    "cutoff": older_than,
                                }
                                kept = (await conn.execute(first_kept, params)).scalar()
                                if kept is not None:
                                    end = kept - 1
                        if end < oldest:
                            continue
                        runs.append((name, oldest, end))
                        budget -= end - oldest + 1
                        if budget == 0:
                            # The channel may have more: the next call starts with it.
                            self._prune_after = previous
                            return runs
                    if len(rows) < _PRUNE_CHANNELS:
                        break
        return runs

    def _prune_rows(self, conn: sa.Connection, runs: list[tuple[str, int, int]]) -> int:
        """Delete the runs of :meth:`_prune_plan`, inside one transaction; return the count."""
        messages = self.messages
        if self._dialect != "postgresql":
            one = messages.delete().where(
                messages.c.channel == sa.bindparam("name"),
                messages.c.seq.between(sa.bindparam("low"), sa.bindparam("high")),
            )
            return sum(
                conn.execute(one, {"name": name, "low": low, "high": high}).rowcount
                for name, low, high in runs
            )
        from sqlalchemy.dialects.postgresql import ARRAY

        wanted = sa.select(
            sa.func.unnest(sa.bindparam("names", type_=ARRAY(sa.String))).label("name"),
            sa.func.unnest(sa.bindparam("lows", type_=ARRAY(sa.BigInteger))).label("low"),
            sa.func.unnest(sa.bindparam("highs", type_=ARRAY(sa.BigInteger))).label("high"),
        ).subquery("wanted")
        # SKIP LOCKED: rows another transaction is deleting (a max_messages trim, another
        # process's prune) are left to it. Waiting for them could deadlock with a group
        # commit that trims several channels in another order, and fail its appends.
        doomed = (
            sa.select(messages.c.channel, messages.c.seq)
            .join(
                wanted,
                sa.and_(
                    messages.c.channel == wanted.c.name,
                    messages.c.seq.between(wanted.c.low, wanted.c.high),
                ),
            )
            .with_for_update(of=messages, skip_locked=True)
            .cte("doomed")
        )
        stmt = messages.delete().where(
            messages.c.channel == doomed.c.channel, messages.c.seq == doomed.c.seq
        )
        names, lows, highs = zip(*runs, strict=True)
        params = {"names": list(names), "lows": list(lows), "highs": list(highs)}
        return int(conn.execute(stmt, params).rowcount)


class _SQLiteWriter:
    """Write transactions on a SQLite file, each run whole in one dedicated thread.

    A transaction is handed to the thread once and comes back committed (or
    rolled back): one hand-over per batch, whatever the number of statements.
    Takes SQLite's write lock up front (``BEGIN IMMEDIATE``), like the async path.
    """

    def __init__(self, url: sa.URL, on_connect: Callable[[Any, Any], None]) -> None:
        self._engine = sa.create_engine(
            url.set(drivername="sqlite+pysqlite"), pool_size=1, max_overflow=0
        )
        event.listen(self._engine, "connect", on_connect)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pubsub-sqlite")

    async def run(self, work: Callable[[sa.Connection, _B], _R], arg: _B) -> _R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._transaction, work, arg)

    def _transaction(self, work: Callable[[sa.Connection, _B], _R], arg: _B) -> _R:
        with self._engine.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                result = work(conn, arg)
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
            return result

    async def close(self) -> None:
        # The connection belongs to the thread: close it there, after any last commit.
        await asyncio.get_running_loop().run_in_executor(self._thread, self._engine.dispose)
        self._thread.shutdown(wait=False)


def _is_sqlite_file(url: sa.URL) -> bool:
    """A SQLite database on disk (an in-memory one has a single-connection pool)."""
    database = url.database or ""
    return database not in ("", ":memory:") and url.query.get("mode") != "memory"


def sqlite_busy_timeout(seconds: float) -> Callable[[Any], None]:
    """The store's default SQLite set-up: wait up to ``seconds`` for another process's
    write lock instead of failing at once (the file is switched to WAL on connect)."""
    statement = f"PRAGMA busy_timeout = {int(seconds * 1000)}"

    def setup(dbapi_connection: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(statement)
        cursor.close()

    return setup


def define_tables(metadata: sa.MetaData, prefix: str = "pubsub_") -> tuple[sa.Table, sa.Table]:
    """The store's two tables (channels, messages) and the dedupe index, in ``metadata``.

    For an application whose own migrations create them (see ``create_tables``).
    """
    channels = sa.Table(
        f"{prefix}channels",
        metadata,
        sa.Column("channel", sa.String(_MAX_CHANNEL), primary_key=True),
        sa.Column("epoch", sa.String(32), nullable=False),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
    )
    messages = sa.Table(
        f"{prefix}messages",
        metadata,
        sa.Column("channel", sa.String(_MAX_CHANNEL), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("dedupe_key", sa.String(255), nullable=True),
    )
    not_null = messages.c.dedupe_key.is_not(None)
    sa.Index(
        f"{prefix}messages_dedupe",
        messages.c.channel,
        messages.c.dedupe_key,
        unique=True,
        sqlite_where=not_null,
        postgresql_where=not_null,
    )
    return channels, messages
