"""A real server on a loopback port, in the test's event loop, and clients for it."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from streamchat.app import create_app, server_options
from streamchat.client import ChatClient, login
from streamchat.config import Settings
from streamchat.services import Services


@dataclass
class LiveServer:
    app: FastAPI
    url: str

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services

    async def login(self, twitch_id: str, login_name: str | None = None) -> str:
        return await login(self.url, twitch_id, login_name)

    def connect(
        self, session: str | None = None, **kwargs: Any
    ) -> AbstractAsyncContextManager[ChatClient]:
        return ChatClient.connect(self.url, session, **kwargs)


@asynccontextmanager
async def live_server(
    settings: Settings, sock: socket.socket | None = None
) -> AsyncIterator[LiveServer]:
    """``settings``' server on ``sock`` (bound, not yet listening), or on a free port."""
    app = create_app(settings)
    if sock is None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    options = server_options(settings) | {"log_level": "warning"}
    del options["host"], options["port"]
    config = uvicorn.Config(app, **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield LiveServer(app, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
        sock.close()


ServerFactory = Callable[..., AbstractAsyncContextManager[LiveServer]]


#: The configurations every test here runs on, as its id says: the embedded one (one
#: process, SQLite, the in-memory broker) and the deployed one (PostgreSQL and Redis).
BACKENDS = ("sqlite-memory", "postgresql-redis")

#: Fixtures that bring a test's own services (a PostgreSQL database, a Redis server or a
#: proxy in front of one): such a test sets its own ``database_url`` or ``broker_url``, so
#: the second configuration would only run it again.
_OWN_SERVICES = frozenset({"cluster_database", "redis_url"})

#: Tests held to the embedded configuration, and why. A new test says it itself with
#: ``@pytest.mark.embedded_only(reason)``; this names those in files that predate it.
_EMBEDDED_ONLY = {
    "test_hardening.py::test_a_database_outage_is_503_and_keeps_the_connection": (
        "it fakes an outage by renaming a table: SQLite reports that as an OperationalError "
        "(an outage, 503), PostgreSQL as an UndefinedTable error (a schema bug, rightly 500); "
        "test_faults.py takes a real PostgreSQL away"
    ),
    "test_limits.py::test_slow_http_clients_are_cut_off": "uvicorn's HTTP deadline only",
    "test_limits.py::test_the_request_deadline_spares_whole_requests_and_websockets": (
        "uvicorn's HTTP deadline only"
    ),
}

#: Known product bugs that make a test fail on one configuration, and how it fails: the test
#: runs there as a strict xfail, so the fix makes it fail until its entry here is deleted.
_KNOWN_BUGS: dict[tuple[str, str], tuple[str, type[Exception]]] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "embedded_only(reason): run a WebSocket test on SQLite and memory:// only"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "chat_settings" not in metafunc.fixturenames:
        return
    test = metafunc.definition.nodeid.rsplit("/", 1)[-1]
    embedded_only = (
        test in _EMBEDDED_ONLY
        or metafunc.definition.get_closest_marker("embedded_only") is not None
        or not _OWN_SERVICES.isdisjoint(metafunc.fixturenames)
    )
    if embedded_only:
        return  # one configuration, chat_settings' default, and no id for it
    params = []
    for backend in BACKENDS:
        bug = _KNOWN_BUGS.get((test, backend))
        marks = [pytest.mark.xfail(reason=bug[0], raises=bug[1], strict=True)] if bug else []
        params.append(pytest.param(backend, marks=marks))
    metafunc.parametrize("chat_settings", params, indirect=True)


def settings_on(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """A server's settings on ``backend``, with a database and broker namespace of the test's
    own, so that no test sees another's data or messages."""
    # The stream watcher's events would interleave with what tests expect; its own tests
    # turn it on.
    if backend == "sqlite-memory":
        return Settings(
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}", run_singletons=False
        )
    # An empty database (the app migrates it on start), and a namespace on the shared
    # Redis server.
    database_url: str = request.getfixturevalue("empty_postgres_database")
    redis_url: str = request.getfixturevalue("redis_url")
    return Settings(
        database_url=database_url,
        broker_url=redis_url,
        broker_namespace=f"test-{uuid.uuid4().hex}:",
        run_singletons=False,
    )


@pytest.fixture
def chat_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """The settings on the configuration this test runs on; the first of ``BACKENDS`` where the
    test is not parametrized (tests outside tests/ws import this fixture)."""
    backend: str = getattr(request, "param", BACKENDS[0])
    return settings_on(backend, request, tmp_path)


@pytest.fixture
def server_factory(chat_settings: Settings) -> ServerFactory:
    def factory(**overrides: Any) -> AbstractAsyncContextManager[LiveServer]:
        return live_server(chat_settings.model_copy(update=overrides))

    return factory


@pytest.fixture
async def server(chat_settings: Settings) -> AsyncIterator[LiveServer]:
    async with live_server(chat_settings) as server:
        yield server


ROOM = "pixelpaladin"
OTHER_ROOM = "lunatidestv"


def ws_url(server: LiveServer) -> str:
    return server.url.replace("http", "ws", 1) + "/ws"


async def close_code(ws: ClientConnection, wait: float = 20.0) -> int | None:
    """Read until the server closes; return the code it closed with."""
    async with asyncio.timeout(wait):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
