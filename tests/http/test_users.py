from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from streamchat.store.models import User
from tests.http.conftest import client_for, services_of


async def test_register_creates_then_returns_existing_unchanged(client: httpx.AsyncClient) -> None:
    first = await client.post(
        "/api/users", json={"twitch_id": "12345", "login": "Alice_1", "display_name": "Alice"}
    )
    assert first.status_code == 201
    body = first.json()
    assert body["twitch_id"] == "12345"
    assert body["login"] == "alice_1"
    assert body["display_name"] == "Alice"
    assert body["favorite"] is None

    again = await client.post(
        "/api/users", json={"twitch_id": "12345", "login": "someone_else", "display_name": "X"}
    )
    assert again.status_code == 200
    assert again.json() == body


async def test_display_name_defaults_to_login(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/users", json={"twitch_id": "7", "login": "MixedCase"})
    assert response.status_code == 201
    assert response.json()["login"] == "mixedcase"
    assert response.json()["display_name"] == "MixedCase"


async def test_register_with_id_only(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/users", json={"twitch_id": "99"})
    assert response.status_code == 201
    assert response.json()["login"] is None


async def test_concurrent_duplicate_registrations_create_one_row(app: FastAPI) -> None:
    async def register(client: httpx.AsyncClient) -> int:
        response = await client.post("/api/users", json={"twitch_id": "555", "login": "racer"})
        return response.status_code

    # Separate clients, as separate browsers would be.
    clients = [client_for(app) for _ in range(20)]
    try:
        statuses = await asyncio.gather(*(register(c) for c in clients))
    finally:
        for c in clients:
            await c.aclose()
    assert sorted(statuses) == [200] * 19 + [201]
    async with services_of(app).db.session() as session:
        count = await session.scalar(
            select(func.count()).select_from(User).where(User.twitch_id == "555")
        )
    assert count == 1


async def test_login_taken_by_another_id_is_409(client: httpx.AsyncClient) -> None:
    assert (
        await client.post("/api/users", json={"twitch_id": "1", "login": "bob"})
    ).status_code == 201
    taken = await client.post("/api/users", json={"twitch_id": "2", "login": "BOB"})
    assert taken.status_code == 409
    assert taken.json()["error"]["code"] == "login_taken"
    assert (await client.post("/api/login", json={"twitch_id": "2"})).status_code == 404


BAD_FIELDS: list[tuple[str, Any]] = [
    ("twitch_id", ""),
    ("twitch_id", "abc"),
    ("twitch_id", "1" * 21),
    ("twitch_id", "12 3"),
    ("twitch_id", "-1"),
    ("twitch_id", "\uff11\uff12\uff13"),  # full-width digits are not ASCII digits
    ("twitch_id", 123),
    ("twitch_id", None),
    ("twitch_id", ["1"]),
    ("login", ""),
    ("login", "a" * 26),
    ("login", "bad-name"),
    ("login", "héllo"),
    ("login", "two words"),
    ("login", 5),
    ("display_name", ""),
    ("display_name", "   "),
    ("display_name", "a" * 51),
    ("display_name", "a" * 50 + " "),  # the length sent counts, as the schema says
    ("display_name", "bad\x00name"),
    ("display_name", "line\nbreak"),
    ("display_name", {"x": 1}),
]


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS)
async def test_register_rejects_bad_field(
    client: httpx.AsyncClient, field: str, value: Any
) -> None:
    body: dict[str, Any] = {"twitch_id": "4242", "login": "good_login"}
    body[field] = value
    response = await client.post("/api/users", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert field in error["message"]
    assert any(item["field"] == field for item in error["details"])
    assert (await client.post("/api/login", json={"twitch_id": "4242"})).status_code in (404, 422)


async def test_register_requires_twitch_id(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/users", json={"login": "nobody"})
    assert response.status_code == 422
    assert "twitch_id" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b'{"twitch_id": "1"', {"content-type": "application/json"}),
        (b"[1, 2]", {"content-type": "application/json"}),
        (b"null", {"content-type": "application/json"}),
        (b"twitch_id=1", {"content-type": "application/x-www-form-urlencoded"}),
        (b"\xff\xfe", {"content-type": "application/json"}),
        (b'{"twitch_id": "\xc3("}', {"content-type": "application/json"}),  # not UTF-8
        (b"[" * 10_000, {"content-type": "application/json"}),  # too deep to parse
        (b"", {}),
    ],
)
async def test_malformed_bodies_are_4xx_json(
    client: httpx.AsyncClient, content: bytes, headers: dict[str, str]
) -> None:
    for path in ("/api/users", "/api/login"):
        response = await client.post(path, content=content, headers=headers)
        assert 400 <= response.status_code < 500, response.text
        assert response.json()["error"]["code"] == "invalid_input"
