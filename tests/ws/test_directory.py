"""Watching the streamer directory: ``watch`` / ``unwatch`` and the ``streamer`` frames that
follow, from the stream watcher on this process or another."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from streamchat.client import ChatClient, ChatError
from streamchat.config import Settings
from streamchat.protocol import StreamerChange
from tests.helpers import wait_for
from tests.ws.conftest import LiveServer, ServerFactory, live_server

ADMIN_TOKEN = "operator-token-0123456789"
WATCHER = {"run_singletons": True, "admin_token": ADMIN_TOKEN, "watch_interval": 3600.0}


async def command(server: LiveServer, name: str, **args: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ) as http:
        reply = await http.post(
            "/api/admin/actors/stream-watcher/commands", json={"command": name, "args": args}
        )
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()["reply"]
    return body


async def offline_streamer(server: LiveServer) -> tuple[str, str]:
    # The watcher's first look at the (sample) streams is over once a refresh returns.
    await command(server, "refresh")
    streamer = next(s for s in await server.services.streamers.all() if not s.live)
    return streamer.id, streamer.login


async def next_change(chat: ChatClient, within: float = 5.0) -> StreamerChange:
    async with asyncio.timeout(within):
        while True:
            event = await chat.next_event(None)
            if isinstance(event, StreamerChange):
                return event


async def no_change(chat: ChatClient, within: float = 1.0) -> None:
    with pytest.raises(TimeoutError):
        await next_change(chat, within)


async def test_watchers_hear_of_every_stream_change(server_factory: ServerFactory) -> None:
    async with server_factory(**WATCHER) as server:
        streamer_id, login = await offline_streamer(server)
        async with server.connect() as watcher, server.connect() as bystander:
            assert (await watcher.watch_streamers()).feed == "streamers"
            # Watching twice is harmless: one copy of each change.
            await watcher.watch_streamers()

            await command(server, "stream_event", broadcaster_id=streamer_id, kind="stream.online")
            change = await next_change(watcher)
            assert change.kind == "stream.online"
            assert change.data["id"] == streamer_id
            assert change.data["login"] == login
            assert change.data["live"] is True
            await command(
                server,
                "stream_event",
                broadcaster_id=streamer_id,
                kind="channel.update",
                title="new title",
            )
            change = await next_change(watcher)
            assert (change.kind, change.data["title"]) == ("stream.update", "new title")
            await no_change(watcher, 0.3)
            # Only connections that asked receive the directory.
            await no_change(bystander, 0.3)

            await watcher.unwatch_streamers()
            await command(server, "stream_event", broadcaster_id=streamer_id, kind="stream.offline")
            await no_change(watcher)
            assert server.services.rooms.watchers == 0


async def test_only_the_streamers_feed_exists(server: LiveServer) -> None:
    async with server.connect() as chat:
        with pytest.raises(ChatError) as caught:
            await chat.request({"type": "watch", "feed": "everything"})
        assert caught.value.code == "invalid_frame"
        with pytest.raises(ChatError) as caught:
            await chat.request({"type": "watch"})
        assert caught.value.code == "invalid_frame"
        assert "feed" in caught.value.reason


async def test_a_closed_connection_stops_watching(server: LiveServer) -> None:
    async with server.connect() as chat:
        await chat.watch_streamers()
        assert server.services.rooms.watchers == 1
    await wait_for(lambda: server.services.rooms.watchers == 0, what="the watcher is gone")


async def test_changes_reach_watchers_on_every_process(
    empty_postgres_database: str, redis_url: str
) -> None:
    """The watcher runs on one process; a page connected to the other hears of it."""
    shared = Settings(
        database_url=empty_postgres_database,
        broker_url=redis_url,
        broker_namespace=f"test-{uuid.uuid4().hex}:",
        admin_token=ADMIN_TOKEN,
    )
    async with (
        live_server(shared.model_copy(update=WATCHER)) as one,
        live_server(shared.model_copy(update={"run_singletons": False})) as two,
    ):
        streamer_id, _ = await offline_streamer(one)
        async with two.connect() as watcher:
            await watcher.watch_streamers()
            await command(one, "stream_event", broadcaster_id=streamer_id, kind="stream.online")
            change = await next_change(watcher)
            assert (change.kind, change.data["id"]) == ("stream.online", streamer_id)
