from __future__ import annotations

import httpx
import pytest

from streamchat.protocol import EventFrame
from tests.ws.conftest import ROOM, ServerFactory

TOKEN = "s3cret-admin-token"


async def test_admin_broadcasts_an_event_to_a_room(server_factory: ServerFactory) -> None:
    async with server_factory(admin_token=TOKEN) as server, server.connect() as chat:
        await chat.subscribe(ROOM)
        async with httpx.AsyncClient(base_url=server.url) as http:
            response = await http.post(
                f"/api/admin/rooms/{ROOM}/events",
                json={"kind": "announcement", "data": {"text": "maintenance at 10"}},
                headers={"authorization": f"Bearer {TOKEN}"},
            )
        assert response.status_code == 202
        event = await chat.next_event(5)
        assert event == EventFrame(ROOM, "announcement", {"text": "maintenance at 10"})


@pytest.mark.parametrize(
    ("configured", "header", "status", "code"),
    [
        (None, f"Bearer {TOKEN}", 403, "admin_disabled"),
        (TOKEN, None, 401, "not_authenticated"),
        (TOKEN, TOKEN, 401, "not_authenticated"),
        (TOKEN, "Bearer wrong", 403, "forbidden"),
    ],
)
async def test_admin_needs_the_token(
    server_factory: ServerFactory,
    configured: str | None,
    header: str | None,
    status: int,
    code: str,
) -> None:
    async with server_factory(admin_token=configured) as server:
        headers = {"authorization": header} if header else {}
        async with httpx.AsyncClient(base_url=server.url) as http:
            response = await http.post(
                f"/api/admin/rooms/{ROOM}/events", json={"kind": "x"}, headers=headers
            )
        assert response.status_code == status
        assert response.json()["error"]["code"] == code


async def test_admin_event_validation(server_factory: ServerFactory) -> None:
    async with server_factory(admin_token=TOKEN) as server:
        auth = {"authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=server.url, headers=auth) as http:
            unknown = await http.post("/api/admin/rooms/nobody/events", json={"kind": "x"})
            assert unknown.status_code == 404
            bad = await http.post(f"/api/admin/rooms/{ROOM}/events", json={"kind": "Bad Kind!"})
            assert bad.status_code == 422
