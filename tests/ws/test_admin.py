from __future__ import annotations

import asyncio
import os
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from streamchat.actors import ActorState
from streamchat.protocol import EventFrame
from tests.helpers import wait_for
from tests.ws.conftest import OTHER_ROOM, ROOM, ServerFactory

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


AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/admin/actors", None),
        ("POST", "/api/admin/actors/retention/commands", {"command": "pause"}),
        ("POST", "/api/admin/broadcast", {"text": "hi"}),
    ],
)
async def test_actor_control_needs_the_token(
    server_factory: ServerFactory, method: str, path: str, body: object
) -> None:
    async with server_factory(admin_token=TOKEN) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            missing = await http.request(method, path, json=body)
            wrong = await http.request(
                method, path, json=body, headers={"authorization": "Bearer nope"}
            )
        assert (missing.status_code, missing.json()["error"]["code"]) == (401, "not_authenticated")
        assert (wrong.status_code, wrong.json()["error"]["code"]) == (403, "forbidden")


async def test_actors_are_listed_with_their_state_and_node(server_factory: ServerFactory) -> None:
    async with server_factory(admin_token=TOKEN, run_singletons=True) as server:
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as http:

            async def all_running() -> dict[str, Any] | None:
                listing: dict[str, Any] = (await http.get("/api/admin/actors")).json()
                states = {a["name"]: a["state"] for a in listing["actors"]}
                return listing if set(states.values()) == {"running"} else None

            listing = await wait_for(all_running, 10.0, interval=0.05)
        states = {a["name"]: a["state"] for a in listing["actors"]}
        assert states == {
            "presence-janitor": "running",
            "retention": "running",
            "stream-watcher": "running",
        }
        node = server.services.cluster.node
        for actor in listing["actors"]:
            assert actor["node"] == {
                "id": node.id,
                "host": node.host,
                "pid": os.getpid(),
                "kind": "server",
            }
            assert (actor["mailbox"], actor["restarts"], actor["last_error"]) == (0, 0, None)
        assert [n["id"] for n in listing["nodes"]] == [node.id]


async def test_commands_reach_actors_and_are_checked(server_factory: ServerFactory) -> None:
    async with (
        server_factory(admin_token=TOKEN, run_singletons=True) as server,
        httpx.AsyncClient(base_url=server.url, headers=AUTH) as http,
    ):

        async def command(name: str, body: object) -> httpx.Response:
            return await http.post(f"/api/admin/actors/{name}/commands", json=body)

        refreshed = await command("stream-watcher", {"command": "refresh"})
        assert refreshed.status_code == 200, refreshed.text
        assert isinstance(refreshed.json()["reply"]["changed"], list)

        paused = await command("stream-watcher", {"command": "pause"})
        assert paused.json()["reply"] == {"state": "paused"}
        listing = (await http.get("/api/admin/actors")).json()
        assert {a["name"]: a["state"] for a in listing["actors"]}["stream-watcher"] == "paused"
        resumed = await command("stream-watcher", {"command": "resume", "args": {}})
        assert resumed.json()["reply"] == {"state": "running"}

        swept = await command("presence-janitor", {"command": "sweep"})
        assert set(swept.json()["reply"]) == {"presence", "nodes", "sessions"}
        pruned = await command("retention", {"command": "prune"})
        assert pruned.json()["reply"] == {"deleted": 0}

        for name, body, status, code in [
            ("nobody", {"command": "pause"}, 404, "unknown_actor"),
            ("stream-watcher", {"command": "explode"}, 422, "invalid_command"),
            ("stream-watcher", {"command": "pause", "args": {"x": 1}}, 422, "invalid_command"),
            ("stream-watcher", {"command": "broadcast", "args": {}}, 422, "invalid_command"),
            ("stream-watcher", {"args": {}}, 422, "invalid_input"),
            ("stream-watcher", {"command": "pause", "args": [1]}, 422, "invalid_input"),
        ]:
            response = await command(name, body)
            assert (response.status_code, response.json()["error"]["code"]) == (status, code)


async def test_broadcast_reaches_every_room_and_every_actor(server_factory: ServerFactory) -> None:
    async with server_factory(admin_token=TOKEN) as server, server.connect() as chat:
        await chat.subscribe(ROOM)
        await chat.subscribe(OTHER_ROOM)
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as http:
            sent = await http.post("/api/admin/broadcast", json={"text": "restart at noon"})
            assert sent.status_code == 202
            for bad in ({"text": ""}, {"text": "x" * 501}, {"text": "a\nb"}, {}):
                refused = await http.post("/api/admin/broadcast", json=bad)
                assert refused.status_code == 422, bad
        rooms = set()
        async with asyncio.timeout(5):
            while len(rooms) < 2:
                event = await chat.next_event(5)
                assert event == EventFrame(event.room, "broadcast", {"text": "restart at noon"})  # type: ignore[union-attr]
                rooms.add(event.room)  # type: ignore[union-attr]
        assert rooms == {ROOM, OTHER_ROOM}


async def test_a_crashing_actor_is_restarted_and_counted(server_factory: ServerFactory) -> None:
    """The stream watcher's table disappears under it: it crashes, then comes back."""
    async with server_factory(
        admin_token=TOKEN, run_singletons=True, watch_interval=0.05
    ) as server:
        db = server.services.db
        async with db.session() as session:
            await session.execute(text("ALTER TABLE streamers RENAME TO streamers_away"))
        try:
            async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as http:

                async def restarted_twice() -> dict[str, Any] | None:
                    listing = (await http.get("/api/admin/actors")).json()
                    watcher: dict[str, Any] = next(
                        a for a in listing["actors"] if a["name"] == "stream-watcher"
                    )
                    return watcher if watcher["restarts"] >= 2 else None

                watcher = await wait_for(restarted_twice, 10.0, interval=0.02)
        finally:
            async with db.session() as session:
                await session.execute(text("ALTER TABLE streamers_away RENAME TO streamers"))
        assert watcher["restarts"] >= 2
        assert "streamers" in watcher["last_error"]
        # One line, without the SQL and its parameters.
        assert "\n" not in watcher["last_error"]
        assert "[SQL" not in watcher["last_error"]
        assert datetime.fromisoformat(watcher["last_error_at"]).tzinfo is not None
        assert watcher["state"] in ("restarting", "running")
        # Back on its feet once the table is back: it refreshes again.
        cell = server.services.cluster.actors.cell("stream-watcher")
        await wait_for(lambda: cell.state is ActorState.RUNNING, 10.0)
        reply = await server.services.cluster.command("stream-watcher", "refresh", {})
        assert isinstance(reply, dict)
        assert isinstance(reply["changed"], list)


async def test_actors_that_nothing_runs_are_listed_as_stopped(
    server_factory: ServerFactory,
) -> None:
    async with (
        server_factory(admin_token=TOKEN, run_singletons=False) as server,
        httpx.AsyncClient(base_url=server.url, headers=AUTH) as http,
    ):
        listing = (await http.get("/api/admin/actors")).json()
        by_name = {a["name"]: a for a in listing["actors"]}
        assert by_name["presence-janitor"]["state"] == "running"
        for name in ("stream-watcher", "retention"):
            assert (by_name[name]["state"], by_name[name]["node"]) == ("stopped", None)
        refused = await http.post(
            "/api/admin/actors/stream-watcher/commands", json={"command": "refresh"}
        )
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "actor_unavailable"


@pytest.mark.parametrize(
    "header",
    [f"Bearer   {TOKEN}", f"bearer\t{TOKEN}", f"BEARER {TOKEN}"],
)
async def test_bearer_spacing_that_http_allows(server_factory: ServerFactory, header: str) -> None:
    async with (
        server_factory(admin_token=TOKEN) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        response = await http.get("/api/admin/actors", headers={"authorization": header})
        assert response.status_code == 200, response.text
