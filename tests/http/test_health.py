from __future__ import annotations

import dataclasses

import httpx
from fastapi import FastAPI

from streamchat.store.database import Database
from tests.http.conftest import services_of


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_when_the_database_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["database"] == "ok"


async def test_readyz_is_503_when_the_database_is_unreachable(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    services = services_of(app)
    # Nothing listens on port 1: connecting fails at once, as with a database that is down.
    unreachable = Database("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    app.state.services = dataclasses.replace(services, db=unreachable)
    try:
        response = await client.get("/readyz")
    finally:
        app.state.services = services
        await unreachable.close()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"
    assert response.json()["checks"]["database"] == "unreachable"


async def test_openapi_docs_are_served(client: httpx.AsyncClient) -> None:
    assert (await client.get("/docs")).status_code == 200
    spec = (await client.get("/openapi.json")).json()
    assert "/api/users" in spec["paths"]
    assert "/api/me/favorite" in spec["paths"]


async def test_unknown_routes_and_methods_are_json_errors(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong = await client.delete("/api/streamers")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"
