"""streamchat.app: the app's settings, its lifespan (start and stop), its options for uvicorn,
the WebSocket taken before the HTTP middleware, and the error handlers it installs."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import text
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from streamchat import __version__
from streamchat.app import StreamchatApp, create_app, server_options
from streamchat.client import ChatClient
from streamchat.config import Settings
from streamchat.errors import RateLimited, StreamchatError, UnknownRoom
from streamchat.pubsub import BrokerError, ConfigurationError, LinkState
from streamchat.services import Services
from streamchat.twitch.sample import sample_streamer_rows
from streamchat.ws.transport import PROTOCOL_CLASS
from tests.ws.conftest import BACKENDS, live_server, settings_on, ws_url


@pytest.fixture(params=BACKENDS)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    return settings_on(request.param, request, tmp_path)


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    return Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'app.db'}", run_singletons=False)


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[Services]:
    """The app's lifespan, entered as uvicorn enters it; its services."""
    async with app.router.lifespan_context(app):
        services: Services = app.state.services
        yield services


def client_for(app: FastAPI) -> httpx.AsyncClient:
    # An unhandled error still gets the app's 500 page, as a server would send it.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def app(sqlite_settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(sqlite_settings)
    async with running(app):
        yield app


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, so no one else takes it, but not
    listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        yield port


async def postgres_connections(database_url: str) -> int:
    """How many connections the PostgreSQL database of ``database_url`` has now."""
    parts = urlsplit(database_url.replace("+asyncpg", ""))
    admin = await asyncpg.connect(parts._replace(path="/postgres").geturl())
    try:
        count: int = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", parts.path.lstrip("/")
        )
    finally:
        await admin.close()
    return count


def has_wal(database: str | None) -> bool:
    """Whether the SQLite database has a write-ahead log: some connection to it is open."""
    return Path(f"{database}-wal").exists()


@pytest.fixture
def gc_state() -> Iterator[None]:
    """Restore the collector as it was, should a failing test leave it frozen."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


# -- create_app and its settings ---------------------------------------------------------


def test_create_app_builds_the_streamchat_app(sqlite_settings: Settings) -> None:
    app = create_app(sqlite_settings)
    assert isinstance(app, StreamchatApp)
    assert (app.title, app.version) == ("streamchat", __version__)
    # Every module's router is in: health, metrics, auth, users, streamers, rooms, admin.
    paths = set(app.openapi()["paths"])
    assert {"/healthz", "/readyz", "/metrics", "/api/login", "/api/logout"} <= paths
    assert {"/api/users", "/api/streamers", "/api/admin/broadcast"} <= paths
    assert any(path.startswith("/api/rooms/") for path in paths)


async def test_create_app_without_settings_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    database = tmp_path / "from-env.db"
    monkeypatch.setenv("STREAMCHAT_DATABASE_URL", f"sqlite+aiosqlite:///{database}")
    monkeypatch.setenv("STREAMCHAT_RUN_SINGLETONS", "false")
    monkeypatch.setenv("STREAMCHAT_SEED_SAMPLE_DATA", "false")
    monkeypatch.setenv("STREAMCHAT_MAX_SUBSCRIPTIONS", "7")
    app = create_app()
    async with running(app) as services:
        assert services.settings.database_url == f"sqlite+aiosqlite:///{database}"
        assert services.gateway.limits.max_subscriptions == 7
        assert await services.streamers.count() == 0
    assert database.exists()


async def test_settings_reach_the_services(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'app.db'}",
        run_singletons=False,
        max_subscriptions=3,
        ws_max_queued_bytes=1 << 16,
        ws_max_requests_per_frame=5,
        ws_requests_per_second=2.5,
        max_connections_per_ip=9,
        max_connections_per_user=4,
        allowed_origins=["https://Example.COM"],
    )
    async with running(create_app(settings)) as services:
        limits = services.gateway.limits
        assert (limits.max_subscriptions, limits.max_queued_bytes) == (3, 1 << 16)
        assert (limits.max_requests_per_frame, limits.requests_per_second) == (5, 2.5)
        assert (limits.max_per_ip, limits.max_per_user) == (9, 4)
        assert services.gateway.allowed_origins == {"https://example.com"}
        assert services.settings is settings
    # Without rate limits, a connection's requests per second are not limited either.
    unlimited = settings.model_copy(update={"rate_limit": False})
    async with running(create_app(unlimited)) as services:
        assert services.gateway.limits.requests_per_second is None


# -- the lifespan: start ---------------------------------------------------------------


async def test_start_migrates_seeds_and_builds_every_service(settings: Settings) -> None:
    app = create_app(settings)
    async with running(app) as services:
        assert app.state.gateway is services.gateway
        assert app.state.throttles is not None
        # Migrated: the tables exist; seeded: the sample streamers are there.
        await services.db.ping()
        async with services.db.session() as session:
            version = await session.scalar(text("SELECT version_num FROM alembic_version"))
        assert version
        assert await services.streamers.count() == len(sample_streamer_rows())
        assert services.pubsub.health.state is LinkState.CONNECTED
        async with client_for(app) as http:
            assert (await http.get("/readyz")).status_code == 200


async def test_a_database_with_streamers_is_not_seeded_again(sqlite_settings: Settings) -> None:
    async with running(create_app(sqlite_settings)) as services:
        async with services.db.session() as session:
            await session.execute(
                text("DELETE FROM streamers WHERE id NOT IN (SELECT min(id) FROM streamers)")
            )
        assert await services.streamers.count() == 1
    async with running(create_app(sqlite_settings)) as services:
        assert await services.streamers.count() == 1


async def test_no_sample_data_when_seeding_is_off(sqlite_settings: Settings) -> None:
    unseeded = sqlite_settings.model_copy(update={"seed_sample_data": False})
    async with running(create_app(unseeded)) as services:
        assert await services.streamers.count() == 0


# -- the lifespan: stop ----------------------------------------------------------------


@pytest.mark.usefixtures("gc_state")
async def test_stop_closes_everything_it_started(settings: Settings) -> None:
    before = asyncio.all_tasks()
    thresholds = gc.get_threshold()
    app = create_app(settings)
    async with running(app) as services:
        assert asyncio.all_tasks() - before  # background loops, the listener...
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (50_000, 20, 20)
        if services.db.is_sqlite:
            assert has_wal(services.db.url.database)
        else:
            assert await postgres_connections(settings.database_url) > 0
    # No task left running; the collector as it was.
    assert asyncio.all_tasks() - before == set()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == thresholds
    # The broker link and the store are closed...
    assert services.pubsub.health.state is LinkState.DISCONNECTED
    with pytest.raises(RuntimeError, match="not connected"):
        await services.pubsub.publish("room:x", b"after the stop")
    # ... and every database connection, of the app and of the chat store: SQLite folds
    # its write-ahead log back when the last one closes.
    if services.db.is_sqlite:
        assert not has_wal(services.db.url.database)
    else:
        assert await postgres_connections(settings.database_url) == 0


async def test_stop_closes_open_websockets(sqlite_settings: Settings) -> None:
    async with live_server(sqlite_settings) as server:
        chat = await ChatClient.open(server.url)
        await chat.ping()
    await chat.wait_closed()
    assert chat.close_code == 1012  # service restart: the client may come back


# -- the lifespan: a start that fails -------------------------------------------------


@pytest.mark.usefixtures("gc_state")
@pytest.mark.parametrize(
    ("broker_url", "error", "message"),
    [
        ("redis://127.0.0.1:{port}/0", BrokerError, "cannot connect to Redis"),
        ("postgresql://postgres@127.0.0.1:{port}/x", BrokerError, "cannot connect to PostgreSQL"),
        ("bogus://127.0.0.1:{port}", ConfigurationError, "unknown broker scheme 'bogus'"),
    ],
    ids=["redis", "postgresql", "unknown"],
)
async def test_a_broker_that_cannot_be_reached_fails_the_start_at_once(
    sqlite_settings: Settings,
    refused_port: int,
    broker_url: str,
    error: type[Exception],
    message: str,
) -> None:
    before = asyncio.all_tasks()
    unreachable = sqlite_settings.model_copy(
        update={"broker_url": broker_url.format(port=refused_port)}
    )
    app = create_app(unreachable)
    with pytest.raises(error, match=message):
        async with asyncio.timeout(10), running(app):
            pass
    # What had started is closed again.
    assert asyncio.all_tasks() - before == set()
    assert gc.get_freeze_count() == 0
    assert not has_wal(sqlite_settings.database_url.split("///", 1)[1])


async def test_a_nats_broker_that_refuses_fails_the_start_at_once(
    sqlite_settings: Settings, refused_port: int
) -> None:
    unreachable = sqlite_settings.model_copy(
        update={"broker_url": f"nats://127.0.0.1:{refused_port}"}
    )
    with pytest.raises(BrokerError, match="cannot connect to NATS"):
        async with asyncio.timeout(5), running(create_app(unreachable)):
            pass


async def test_a_database_that_cannot_be_reached_fails_the_start_at_once(
    sqlite_settings: Settings, refused_port: int
) -> None:
    before = asyncio.all_tasks()
    unreachable = sqlite_settings.model_copy(
        update={"database_url": f"postgresql+asyncpg://postgres@127.0.0.1:{refused_port}/x"}
    )
    with pytest.raises(OSError, match="Connect call failed"):
        async with asyncio.timeout(10), running(create_app(unreachable)):
            pass
    assert asyncio.all_tasks() - before == set()


# -- server_options --------------------------------------------------------------------


def test_server_options_map_the_settings() -> None:
    settings = Settings(
        host="127.0.0.2",
        port=8123,
        log_level="WARNING",
        ws_max_message_size=1 << 12,
        ws_ping_interval=3.0,
        ws_ping_timeout=4.0,
        ws_compression=True,
        http_request_timeout=7.0,
    )
    options = server_options(settings)
    assert options["host"] == "127.0.0.2"
    assert options["port"] == 8123
    assert options["log_level"] == "warning"
    assert options["ws"] == PROTOCOL_CLASS
    assert options["ws_max_size"] == 1 << 12
    assert (options["ws_ping_interval"], options["ws_ping_timeout"]) == (3.0, 4.0)
    assert options["ws_per_message_deflate"] is True
    # No trusted proxy: X-Forwarded-For is believed from no one.
    assert options["proxy_headers"] is False
    assert options["forwarded_allow_ips"] is None


def test_server_options_trust_only_the_configured_proxies() -> None:
    options = server_options(Settings(trusted_proxies="10.0.0.0/8, 192.0.2.7"))
    assert options["proxy_headers"] is True
    assert options["forwarded_allow_ips"] == ["10.0.0.0/8", "192.0.2.7"]


def test_uvicorn_takes_the_server_options(sqlite_settings: Settings) -> None:
    settings = sqlite_settings.model_copy(update={"http_request_timeout": 7.0})
    config = uvicorn.Config(create_app(settings), **server_options(settings))
    config.load()
    assert config.ws_protocol_class is not None
    assert f"{config.ws_protocol_class.__module__}:{config.ws_protocol_class.__name__}" == (
        PROTOCOL_CLASS
    )
    assert config.http_protocol_class is not None
    assert config.ws_max_size == settings.ws_max_message_size


# -- the WebSocket, before the HTTP middleware -----------------------------------------


async def test_the_chat_websocket_is_served_on_its_path_only(sqlite_settings: Settings) -> None:
    async with live_server(sqlite_settings) as server:
        async with connect(ws_url(server), additional_headers={"x-request-id": "ws-1"}) as ws:
            assert ws.response is not None
            assert ws.response.headers["x-request-id"] == "ws-1"
            await ws.send('{"type":"ping","id":1}')
            assert await ws.recv() == '{"type":"pong","id":1}'
        for elsewhere in ("/ws/", "/api/ws", "/"):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(ws_url(server).removesuffix("/ws") + elsewhere):
                    pass
            assert refused.value.response.status_code in (403, 404)
        # Plain HTTP on the WebSocket's path is an unknown route.
        async with httpx.AsyncClient(base_url=server.url) as http:
            plain = await http.get("/ws")
        assert plain.status_code == 404
        assert plain.json()["error"]["code"] == "not_found"


# -- request ids and errors --------------------------------------------------------------


async def test_every_response_carries_a_request_id(app: FastAPI) -> None:
    async with client_for(app) as http:
        made = await http.get("/healthz")
        kept = await http.get("/healthz", headers={"x-request-id": "trace-7"})
        missing = await http.get("/nowhere", headers={"x-request-id": "trace-8"})
        refused = await http.post("/api/login", json={"twitch_id": "404"})
        invalid = await http.post("/api/users", json={"twitch_id": "x"})
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    assert kept.headers["x-request-id"] == "trace-7"
    assert (missing.status_code, missing.headers["x-request-id"]) == (404, "trace-8")
    assert refused.status_code == 404
    assert re.fullmatch(r"[0-9a-f]{32}", refused.headers["x-request-id"])
    assert invalid.status_code == 422
    assert re.fullmatch(r"[0-9a-f]{32}", invalid.headers["x-request-id"])


def _raising(exc: Exception) -> Callable[[], Awaitable[None]]:
    async def route() -> None:
        raise exc

    return route


@pytest.fixture
async def app_with_failing_routes(sqlite_settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(sqlite_settings)
    app.add_api_route("/test/limited", _raising(RateLimited("slow down", details={"n": 3})))
    app.add_api_route("/test/room", _raising(UnknownRoom("no such room")))
    app.add_api_route("/test/outage", _raising(ConnectionRefusedError("db down")))
    app.add_api_route("/test/bug", _raising(ZeroDivisionError("oops")))
    async with running(app):
        yield app


async def test_a_streamchat_error_is_json_with_its_code_and_status(
    app_with_failing_routes: FastAPI,
) -> None:
    async with client_for(app_with_failing_routes) as http:
        limited = await http.get("/test/limited")
        room = await http.get("/test/room")
    assert limited.status_code == RateLimited.status == 429
    assert limited.json() == {
        "error": {"code": "rate_limited", "message": "slow down", "details": {"n": 3}}
    }
    assert room.status_code == 404
    assert room.json() == {"error": {"code": "unknown_room", "message": "no such room"}}
    assert issubclass(UnknownRoom, StreamchatError)


async def test_unknown_routes_and_methods_are_json(app: FastAPI) -> None:
    async with client_for(app) as http:
        missing = await http.get("/api/nothing/here")
        wrong = await http.put("/healthz")
        not_json = await http.post(
            "/api/users", content=b"{nope", headers={"content-type": "application/json"}
        )
    assert (missing.status_code, missing.json()) == (
        404,
        {"error": {"code": "not_found", "message": "Not Found"}},
    )
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (405, "method_not_allowed")
    assert not_json.status_code == 422
    assert not_json.json()["error"] == {
        "code": "invalid_input",
        "message": "the request body is not valid JSON",
    }


async def test_an_outage_is_503_logged_in_one_line(
    app_with_failing_routes: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    async with client_for(app_with_failing_routes) as http:
        outage = await http.get("/test/outage")
    assert outage.status_code == 503
    assert outage.json()["error"]["code"] == "unavailable"
    assert "x-request-id" in outage.headers
    [line] = [r for r in caplog.records if "/test/outage" in r.getMessage()]
    assert line.levelno == logging.WARNING
    assert "ConnectionRefusedError: db down" in line.getMessage()
    assert line.exc_info is None


async def test_an_unexpected_error_is_a_500_json_page_logged_with_its_traceback(
    app_with_failing_routes: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    async with client_for(app_with_failing_routes) as http:
        bug = await http.get("/test/bug")
    assert bug.status_code == 500
    assert bug.json() == {"error": {"code": "internal_error", "message": "internal server error"}}
    assert "oops" not in bug.text  # nothing of the internals leaks
    logged = [r for r in caplog.records if r.exc_info and "/test/bug" in r.getMessage()]
    assert logged
    assert isinstance(logged[0].exc_info[1], ZeroDivisionError)  # type: ignore[index]


async def test_a_500_carries_the_request_id_too(app_with_failing_routes: FastAPI) -> None:
    async with client_for(app_with_failing_routes) as http:
        bug = await http.get("/test/bug", headers={"x-request-id": "trace-500"})
    assert bug.status_code == 500
    assert bug.headers.get("x-request-id") == "trace-500"
