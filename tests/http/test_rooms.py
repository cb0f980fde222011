"""Room history over HTTP, on both databases."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from streamchat.protocol import UserRef
from tests.http.conftest import AppFactory, client_for, services_of

ROOM = "pixelpaladin"


@pytest.fixture
async def posted(app: FastAPI) -> list[int]:
    rooms = services_of(app).rooms
    await services_of(app).users.register("501", login="poster")
    user = UserRef("501", "poster", "poster")
    return [(await rooms.post(user, ROOM, f"m{i}")).seq for i in range(1, 8)]


async def test_latest_messages(client: httpx.AsyncClient, posted: list[int]) -> None:
    response = await client.get(f"/api/rooms/{ROOM}/messages", params={"limit": 3})
    assert response.status_code == 200
    body = response.json()
    assert body["room"] == ROOM
    assert [m["seq"] for m in body["messages"]] == posted[-3:]
    message = body["messages"][0]
    assert message["type"] == "message"
    assert message["room"] == ROOM
    assert message["user"] == {"id": "501", "login": "poster", "display_name": "poster"}
    assert message["text"] == "m5"
    assert isinstance(message["ts"], int)
    assert message["message_id"]


async def test_before_and_after(client: httpx.AsyncClient, posted: list[int]) -> None:
    before = await client.get(f"/api/rooms/{ROOM}/messages", params={"before": 4})
    assert [m["seq"] for m in before.json()["messages"]] == [1, 2, 3]
    after = await client.get(f"/api/rooms/{ROOM}/messages", params={"after": 4, "limit": 2})
    assert [m["seq"] for m in after.json()["messages"]] == [5, 6]
    empty = await client.get(f"/api/rooms/{ROOM}/messages", params={"after": 7})
    assert empty.json()["messages"] == []


async def test_an_empty_room(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/rooms/lunatidestv/messages")
    assert response.json() == {"room": "lunatidestv", "messages": []}


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("/api/rooms/nobody/messages", {}, 404, "unknown_room"),
        (f"/api/rooms/{ROOM}/messages", {"limit": 0}, 422, "invalid_input"),
        (f"/api/rooms/{ROOM}/messages", {"before": "x"}, 422, "invalid_input"),
        (f"/api/rooms/{ROOM}/messages", {"after": -1}, 422, "invalid_input"),
        (f"/api/rooms/{ROOM}/messages", {"before": 2, "after": 1}, 422, "invalid_input"),
        (f"/api/rooms/{ROOM}/messages", {"before": 10**30}, 422, "invalid_input"),
    ],
)
async def test_bad_requests(
    client: httpx.AsyncClient, path: str, params: dict[str, object], status: int, code: str
) -> None:
    response = await client.get(path, params=params)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


async def test_limit_is_capped_at_100(app_factory: AppFactory) -> None:
    async with app_factory(rate_limit=False) as app, client_for(app) as client:
        await services_of(app).users.register("502", login="flooder")
        user = UserRef("502", "flooder", "flooder")
        for i in range(105):
            await services_of(app).rooms.post(user, "sablesignal", f"m{i}")
        response = await client.get("/api/rooms/sablesignal/messages", params={"limit": 500})
    messages = response.json()["messages"]
    assert len(messages) == 100
    assert messages[-1]["text"] == "m104"
