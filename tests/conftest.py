"""Shared fixtures: the real services the suite talks to.

PostgreSQL, Redis and NATS run on the CI machine. In CI (``CI=true``) a service
that cannot be reached fails the tests that need it; elsewhere those tests are
skipped and the run ends with a line naming what was skipped and why.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import pytest

POSTGRES_URL = os.environ.get(
    "STREAMCHAT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("STREAMCHAT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
NATS_URL = os.environ.get("STREAMCHAT_TEST_NATS_URL", "nats://127.0.0.1:4222")

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

_unavailable: dict[str, str] = {}


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or default_port
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_service(name: str, url: str, default_port: int) -> None:
    """Fail (in CI) or skip (elsewhere) unless ``url`` accepts TCP connections."""
    if _reachable(url, default_port):
        return
    reason = f"{name} is not reachable at {url}"
    if IN_CI:
        pytest.fail(f"{reason}; CI requires it", pytrace=False)
    _unavailable[name] = reason
    pytest.skip(reason)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _unavailable:
        terminalreporter.write_sep("=", "services not available: their tests were SKIPPED")
        for reason in _unavailable.values():
            terminalreporter.write_line(f"  {reason}")


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, as a plain ``postgresql://`` URL."""
    require_service("PostgreSQL", POSTGRES_URL, 5432)
    name = f"streamchat_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    base = urlsplit(_asyncpg_dsn(POSTGRES_URL))
    try:
        yield base._replace(path=f"/{name}").geturl()
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def empty_postgres_database(postgres_database: str) -> AsyncIterator[str]:
    """A PostgreSQL database of this test's own, dropped after it, as a SQLAlchemy URL.

    Empty: an app started on it runs the migrations, as in a new deployment.
    """
    name = f"streamchat_test_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        url = urlsplit(postgres_database)._replace(path=f"/{name}").geturl()
        yield url.replace("postgresql://", "postgresql+asyncpg://", 1)
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_url() -> str:
    require_service("Redis", REDIS_URL, 6379)
    return REDIS_URL


@pytest.fixture(scope="session")
def nats_url() -> str:
    require_service("NATS", NATS_URL, 4222)
    return NATS_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLAlchemy URL of an empty streamchat database, once per database kind.

    PostgreSQL tests share one database per session; the app fixtures clear
    its user tables before each test.
    """
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("db") / "streamchat.db"
        return f"sqlite+aiosqlite:///{path}"
    url: str = request.getfixturevalue("postgres_database")
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)
