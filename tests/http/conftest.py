from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, text

from streamchat.app import create_app
from streamchat.config import Settings
from streamchat.cookies import SESSION_COOKIE
from streamchat.services import Services
from streamchat.store.models import RoomPresence, Session, User

BASE_URL = "http://testserver"

AppFactory = Callable[..., AbstractAsyncContextManager[FastAPI]]


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[FastAPI]:
    """An app with its lifespan entered, as uvicorn would run it."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


def services_of(app: FastAPI) -> Services:
    services: Services = app.state.services
    return services


@pytest.fixture
def settings(database_url: str) -> Settings:
    # The stream watcher's events would interleave with what tests expect; its own tests
    # turn it on.
    return Settings(database_url=database_url, run_singletons=False)


@pytest.fixture
def app_factory(settings: Settings) -> AppFactory:
    """Start further apps on the same database, with settings overridden."""

    def factory(**overrides: Any) -> AbstractAsyncContextManager[FastAPI]:
        return running(settings.model_copy(update=overrides))

    return factory


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    async with running(settings) as app:
        # PostgreSQL's database is shared by the session: start from no users
        # and no chat history.
        async with services_of(app).db.session() as session:
            await session.execute(delete(RoomPresence))
            await session.execute(delete(Session))
            await session.execute(delete(User))
            await session.execute(text("DELETE FROM pubsub_messages"))
            await session.execute(text("DELETE FROM pubsub_channels"))
        yield app


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as client:
        yield client


async def login_as(
    client: httpx.AsyncClient, twitch_id: str = "1001", login: str | None = "viewer"
) -> str:
    """Register (if needed) and log in; return the session token the cookie holds."""
    body = {"twitch_id": twitch_id} | ({"login": login} if login else {})
    registered = await client.post("/api/users", json=body)
    assert registered.status_code in (200, 201), registered.text
    response = await client.post("/api/login", json={"twitch_id": twitch_id})
    assert response.status_code == 200, response.text
    token = response.cookies.get(SESSION_COOKIE)
    assert token
    return token


def cookie(token: str) -> dict[str, str]:
    """Headers that present ``token`` as the session cookie, whatever the client holds."""
    return {"cookie": f"{SESSION_COOKIE}={token}"}
