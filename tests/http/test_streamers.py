from __future__ import annotations

import httpx
import pytest

from tests.http.conftest import login_as

FIELDS = {
    "id",
    "login",
    "display_name",
    "description",
    "profile_image_url",
    "live",
    "title",
    "game_name",
    "viewer_count",
    "started_at",
    "is_favorite",
}


async def test_sample_streamers_are_loaded_on_first_start(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/streamers")
    assert response.status_code == 200
    streamers = response.json()
    assert len(streamers) >= 20
    for streamer in streamers:
        assert streamer.keys() >= FIELDS
        assert streamer["is_favorite"] is False
        if streamer["live"]:
            assert streamer["started_at"] is not None
            assert streamer["viewer_count"] > 0
        else:
            assert streamer["started_at"] is None
            assert streamer["viewer_count"] == 0
    assert any(s["live"] for s in streamers)
    assert any(not s["live"] for s in streamers)
    # Live first, by audience.
    live_counts = [s["viewer_count"] for s in streamers if s["live"]]
    assert live_counts == sorted(live_counts, reverse=True)
    assert streamers[: len(live_counts)] == [s for s in streamers if s["live"]]


async def test_get_one_streamer_by_login_or_id(client: httpx.AsyncClient) -> None:
    sample = (await client.get("/api/streamers")).json()[0]
    by_login = await client.get(f"/api/streamers/{sample['login']}")
    assert by_login.status_code == 200
    assert by_login.json() == sample
    by_upper = await client.get(f"/api/streamers/{sample['login'].upper()}")
    assert by_upper.json()["id"] == sample["id"]
    by_id = await client.get(f"/api/streamers/{sample['id']}")
    assert by_id.json()["login"] == sample["login"]


@pytest.mark.parametrize("ref", ["nobody_here", "0", "x" * 300, "%00", "x%27%20OR%20%271%27=%271"])
async def test_unknown_streamer_is_404(client: httpx.AsyncClient, ref: str) -> None:
    response = await client.get(f"/api/streamers/{ref}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "streamer_not_found"


async def test_favorite_is_marked_for_its_user_only(client: httpx.AsyncClient) -> None:
    streamers = (await client.get("/api/streamers")).json()
    chosen = streamers[3]
    await login_as(client, "2001", "fan")
    response = await client.put("/api/me/favorite", json={"streamer": chosen["login"]})
    assert response.status_code == 200
    assert response.json()["favorite"]["id"] == chosen["id"]

    marked = (await client.get("/api/streamers")).json()
    assert [s["id"] for s in marked if s["is_favorite"]] == [chosen["id"]]
    one = (await client.get(f"/api/streamers/{chosen['login']}")).json()
    assert one["is_favorite"] is True
    me = (await client.get("/api/me")).json()
    assert me["favorite"]["login"] == chosen["login"]

    # Another viewer and an anonymous caller see no mark.
    await login_as(client, "2002", "other_fan")
    assert not any(s["is_favorite"] for s in (await client.get("/api/streamers")).json())
    client.cookies.clear()
    assert not any(s["is_favorite"] for s in (await client.get("/api/streamers")).json())


async def test_favorite_by_id_then_changed_then_cleared(client: httpx.AsyncClient) -> None:
    streamers = (await client.get("/api/streamers")).json()
    await login_as(client)
    first = await client.put("/api/me/favorite", json={"streamer": streamers[0]["id"]})
    assert first.json()["favorite"]["login"] == streamers[0]["login"]
    second = await client.put("/api/me/favorite", json={"streamer": streamers[1]["login"]})
    assert second.json()["favorite"]["id"] == streamers[1]["id"]
    assert [s["id"] for s in (await client.get("/api/streamers")).json() if s["is_favorite"]] == [
        streamers[1]["id"]
    ]
    cleared = await client.delete("/api/me/favorite")
    assert cleared.status_code == 200
    assert cleared.json()["favorite"] is None
    assert (await client.get("/api/me")).json()["favorite"] is None
    assert not any(s["is_favorite"] for s in (await client.get("/api/streamers")).json())


async def test_favorite_of_unknown_streamer_is_404(client: httpx.AsyncClient) -> None:
    await login_as(client)
    response = await client.put("/api/me/favorite", json={"streamer": "ghost"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "streamer_not_found"
    assert (await client.get("/api/me")).json()["favorite"] is None


@pytest.mark.parametrize("body", [{}, {"streamer": ""}, {"streamer": 5}, {"streamer": "a" * 26}])
async def test_favorite_rejects_bad_input(
    client: httpx.AsyncClient, body: dict[str, object]
) -> None:
    await login_as(client)
    response = await client.put("/api/me/favorite", json=body)
    assert response.status_code == 422
    assert "streamer" in response.json()["error"]["message"]


async def test_favorite_requires_a_session(client: httpx.AsyncClient) -> None:
    put = await client.put("/api/me/favorite", json={"streamer": "pixelpaladin"})
    assert put.status_code == 401
    assert (await client.delete("/api/me/favorite")).status_code == 401
