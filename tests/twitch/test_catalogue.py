"""Operators add streamers as Helix knows them, and remove them; rooms follow."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from streamchat.client import ChatError
from streamchat.config import Settings
from tests.twitch.fake import FakeTwitch, Fault, fake_twitch_server
from tests.ws.conftest import LiveServer, live_server

ADMIN = {"authorization": "Bearer operator-token-0123456789"}


@pytest.fixture
async def twitch() -> AsyncIterator[FakeTwitch]:
    async with fake_twitch_server() as fake:
        yield fake


@pytest.fixture
async def server(twitch: FakeTwitch, tmp_path: Path) -> AsyncIterator[LiveServer]:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}",
        run_singletons=False,
        admin_token="operator-token-0123456789",
        twitch_client_id=twitch.client_id,
        twitch_client_secret=SecretStr(twitch.client_secret),
        twitch_id_url=twitch.id_url,
        twitch_api_url=twitch.api_url,
    )
    async with live_server(settings) as server:
        yield server


@pytest.fixture
async def http(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url) as client:
        yield client


async def test_an_operator_adds_a_streamer_from_helix_and_removes_them(
    http: httpx.AsyncClient, server: LiveServer, twitch: FakeTwitch
) -> None:
    star = twitch.add_user("NovaNights", user_id="555001")
    twitch.set_live(star.id, title="Speedruns", game_name="Celeste", viewer_count=4321)
    added = await http.post("/api/admin/streamers", json={"login": "novanights"}, headers=ADMIN)
    assert added.status_code == 201, added.text
    body = added.json()
    assert (body["id"], body["login"], body["display_name"]) == (
        "555001",
        "novanights",
        "NovaNights",
    )
    assert (body["live"], body["title"], body["viewer_count"]) == (True, "Speedruns", 4321)
    assert (await http.get("/api/streamers/novanights")).json()["live"] is True

    session = await server.login("1001", "viewer")
    async with server.connect(session) as chat:
        await chat.subscribe("novanights")
        await chat.publish("novanights", "first!")

    removed = await http.delete("/api/admin/streamers/novanights", headers=ADMIN)
    assert removed.status_code == 204
    assert (await http.get("/api/streamers/novanights")).status_code == 404
    async with server.connect(session) as chat:
        with pytest.raises(ChatError) as refused:
            await chat.subscribe("novanights")
        assert refused.value.code == "unknown_room"
    again = await http.delete("/api/admin/streamers/novanights", headers=ADMIN)
    assert again.status_code == 404


async def test_unknown_to_twitch_taken_or_without_the_token(
    http: httpx.AsyncClient, twitch: FakeTwitch
) -> None:
    unknown = await http.post("/api/admin/streamers", json={"login": "nobody_here"}, headers=ADMIN)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "streamer_not_found"
    # The sample catalogue has a pixelpaladin; Twitch's is another account.
    twitch.add_user("PixelPaladin", user_id="999999")
    taken = await http.post("/api/admin/streamers", json={"login": "pixelpaladin"}, headers=ADMIN)
    assert taken.status_code == 409
    assert taken.json()["error"]["code"] == "login_taken"
    anonymous = await http.post("/api/admin/streamers", json={"login": "novanights"})
    assert anonymous.status_code == 401
    bad = await http.post("/api/admin/streamers", json={"login": "no spaces"}, headers=ADMIN)
    assert bad.status_code == 422


async def test_twitch_down_is_a_503(http: httpx.AsyncClient, twitch: FakeTwitch) -> None:
    twitch.add_user("NovaNights")
    twitch.inject("/helix/users", Fault.error(503), times=10)
    response = await http.post("/api/admin/streamers", json={"login": "novanights"}, headers=ADMIN)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "twitch_unavailable"


async def test_without_twitch_credentials_adding_is_refused(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'dev.db'}",
        admin_token="operator-token-0123456789",
    )
    async with live_server(settings) as server, httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post("/api/admin/streamers", json={"login": "x"}, headers=ADMIN)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "twitch_disabled"
