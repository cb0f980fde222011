from __future__ import annotations

import httpx
import pytest

from tests.http.conftest import AppFactory, client_for, cookie, login_as

FOREIGN = "https://evil.example"


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": FOREIGN},
        {"origin": "null"},
        {"origin": "http://testserver.evil.example"},
        {"origin": "https://testserver"},  # another scheme is another origin
        {"referer": f"{FOREIGN}/page"},
        {"referer": "not a url"},
    ],
)
async def test_cross_site_writes_are_rejected(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    token = await login_as(client)
    for method, path, body in [
        ("POST", "/api/logout", None),
        ("PUT", "/api/me/favorite", {"streamer": "pixelpaladin"}),
        ("DELETE", "/api/me/favorite", None),
        ("POST", "/api/login", {"twitch_id": "1001"}),
    ]:
        response = await client.request(method, path, json=body, headers=headers)
        assert response.status_code == 403, (method, path)
        assert response.json()["error"]["code"] == "cross_site_request"
    # Nothing happened: still logged in, no favourite.
    me = await client.get("/api/me", headers=cookie(token))
    assert me.status_code == 200
    assert me.json()["favorite"] is None


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "http://testserver"},
        {"referer": "http://testserver/somewhere?x=1"},
        {},  # not a browser: curl, the Python client
    ],
)
async def test_same_origin_writes_pass(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    await login_as(client)
    response = await client.put(
        "/api/me/favorite", json={"streamer": "pixelpaladin"}, headers=headers
    )
    assert response.status_code == 200
    assert (await client.post("/api/logout", headers=headers)).status_code == 204


async def test_allowed_origins_pass(app_factory: AppFactory) -> None:
    async with (
        app_factory(allowed_origins=["https://chat.example.com"]) as app,
        client_for(app) as client,
    ):
        await login_as(client)
        ok = await client.put(
            "/api/me/favorite",
            json={"streamer": "pixelpaladin"},
            headers={"origin": "https://chat.example.com"},
        )
        assert ok.status_code == 200
        refused = await client.delete("/api/me/favorite", headers={"origin": FOREIGN})
        assert refused.status_code == 403


async def test_reads_from_foreign_pages_are_not_blocked(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/streamers", headers={"origin": FOREIGN})
    assert response.status_code == 200
