"""Users, sessions and rooms for the benchmark, made with streamchat's own stores.

Every benchmark client is a logged-in user: the orchestrator registers users
and opens their sessions before the server starts (``UserStore.register``,
``SessionStore.create``), and hands the tokens to the load generator, which
sends them as the ``streamchat_session`` cookie. Rooms are streamers: the
sample set, plus ``benchroomNNN`` streamers for the many-rooms section.

SQLite is prepared once per run as a template file and copied for each server
start; a PostgreSQL database is created for its section and dropped after it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from streamchat.store.database import Database
from streamchat.store.sessions import SessionStore
from streamchat.store.streamers import StreamerStore
from streamchat.store.users import UserStore
from streamchat.twitch.sample import sample_streamer_rows

__all__ = [
    "Accounts",
    "bench_rooms",
    "persisted_messages",
    "postgres_database",
    "prepare_database",
    "sqlite_copy",
]

#: Sessions outlive any run comfortably, and expire on their own afterwards.
_SESSION_TTL = timedelta(days=1)


@dataclass(frozen=True)
class Accounts:
    """The session tokens of the benchmark's users, as the load generator reads them."""

    subscribers: list[str]
    publishers: list[str]
    path: Path

    @classmethod
    def load(cls, path: Path) -> Accounts:
        data = json.loads(path.read_text())
        return cls(data["subscribers"], data["publishers"], path)


def bench_rooms(count: int) -> list[str]:
    """The logins (= room names) of the many-rooms section's streamers."""
    return [f"benchroom{index:03d}" for index in range(count)]


def _room_rows(count: int) -> list[dict[str, Any]]:
    return [
        {"id": f"99{index:06d}", "login": login, "display_name": f"Bench Room {index}"}
        for index, login in enumerate(bench_rooms(count))
    ]


async def _open_sessions(db: Database, prefix: str, count: int, *, concurrency: int) -> list[str]:
    users = UserStore(db)
    sessions = SessionStore(db, ttl=_SESSION_TTL)
    tokens: list[str] = [""] * count
    limit = asyncio.Semaphore(concurrency)

    async def one(index: int) -> None:
        twitch_id = f"{prefix}{index:09d}"
        async with limit:
            await users.register(twitch_id, login=f"b{prefix}u{index}")
            tokens[index] = (await sessions.create(twitch_id)).token

    await asyncio.gather(*(one(index) for index in range(count)))
    return tokens


async def prepare_database(
    url: str, tokens_path: Path, *, subscribers: int, publishers: int, rooms: int
) -> Accounts:
    """Migrate and seed the database at ``url``; register users and open their sessions."""
    started = time.monotonic()
    db = Database(url)
    try:
        await db.migrate()
        streamers = StreamerStore(db)
        await streamers.upsert(sample_streamer_rows())
        await streamers.upsert(_room_rows(rooms))
        # SQLite serialises writers anyway; PostgreSQL takes a few at once.
        concurrency = 1 if db.is_sqlite else 8
        subscriber_tokens = await _open_sessions(db, "8", subscribers, concurrency=concurrency)
        publisher_tokens = await _open_sessions(db, "7", publishers, concurrency=concurrency)
    finally:
        await db.close()
    _save_tokens(tokens_path, subscriber_tokens, publisher_tokens)
    print(
        f"prepared {subscribers + publishers} users and sessions in "
        f"{time.monotonic() - started:.1f} s",
        file=sys.stderr,
    )
    return Accounts(subscriber_tokens, publisher_tokens, tokens_path)


def _save_tokens(path: Path, subscribers: list[str], publishers: list[str]) -> None:
    path.write_text(json.dumps({"subscribers": subscribers, "publishers": publishers}))


def sqlite_copy(template: Path, folder: Path) -> str:
    """A fresh copy of the prepared SQLite file; returns its SQLAlchemy URL."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"streamchat-{uuid.uuid4().hex[:8]}.db"
    shutil.copyfile(template, target)
    return f"sqlite+aiosqlite:///{target}"


@asynccontextmanager
async def postgres_database(admin_url: str) -> AsyncIterator[str]:
    """A scratch PostgreSQL database, dropped on exit; yields its SQLAlchemy URL."""
    import asyncpg

    name = f"streamchat_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    parts = urlsplit(admin_url)
    url = urlunsplit(parts._replace(scheme="postgresql+asyncpg", path=f"/{name}"))
    try:
        yield url
    finally:
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def persisted_messages(url: str, rooms: list[str]) -> int:
    """How many chat messages the store has numbered in ``rooms`` (their last ``seq``, summed)."""
    from sqlalchemy import text

    db = Database(url)
    try:
        async with db.connect() as conn:
            rows = await conn.execute(
                text("SELECT channel, last_seq FROM pubsub_channels"),
            )
            wanted = {f"room:{room}" for room in rooms}
            return sum(int(last) for channel, last in rows if channel in wanted)
    finally:
        await db.close()
