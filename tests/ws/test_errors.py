"""Bad input gets an `error` object with a code; the connection survives unless abused."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from streamchat.client import ChatError
from tests.ws.conftest import ROOM, LiveServer, ServerFactory, close_code, ws_url


async def replies(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(5):
        while len(out) < count:
            frame = await ws.recv()
            out.extend(json.loads(line) for line in str(frame).split("\n"))
    return out


@pytest.mark.parametrize(
    ("frame", "code", "request_id"),
    [
        ("{not json", "malformed_json", None),
        ('"a string"', "invalid_frame", None),
        ("[1, 2]", "invalid_frame", None),
        ('{"id": 7}', "invalid_frame", 7),
        ('{"type": "shout", "id": 8}', "unknown_type", 8),
        ('{"type": 5, "id": 9}', "unknown_type", 9),
        ('{"type": "subscribe", "id": 10}', "invalid_frame", 10),
        ('{"type": "publish", "id": 11, "room": "pixelpaladin"}', "invalid_frame", 11),
        ('{"type": "subscribe", "id": 12, "room": 42}', "invalid_frame", 12),
        (
            '{"type": "subscribe", "id": 13, "room": "pixelpaladin", "since": -1}',
            "invalid_frame",
            13,
        ),
        ('{"type": "history", "id": 14, "room": "pixelpaladin", "limit": 0}', "invalid_frame", 14),
        (
            '{"type": "history", "id": "h", "room": "pixelpaladin", "before": "x"}',
            "invalid_frame",
            "h",
        ),
        ('{"type": "subscribe", "id": 15, "room": "nobody_streams_here"}', "unknown_room", 15),
        ('{"type": "subscribe", "id": 16, "room": "PIXELPALADIN"}', "unknown_room", 16),
        ('{"type": "presence", "id": 17, "room": "bad\\u0000room"}', "unknown_room", 17),
        ('{"type": "history", "id": 18, "room": "nope"}', "unknown_room", 18),
        (
            '{"type": "publish", "id": 19, "room": "pixelpaladin", "text": "hi"}',
            "not_authenticated",
            19,
        ),
    ],
)
async def test_bad_requests_get_an_error_and_the_connection_lives(
    server: LiveServer, frame: str, code: str, request_id: object
) -> None:
    async with connect(ws_url(server)) as ws:
        await ws.send(frame)
        (error,) = await replies(ws, 1)
        assert error["type"] == "error"
        assert error["code"] == code
        assert error.get("id") == request_id
        assert error["reason"]
        await ws.send('{"type":"ping","id":"still-there"}')
        assert await replies(ws, 1) == [{"type": "pong", "id": "still-there"}]


@pytest.mark.parametrize(
    "text",
    ["", "   ", "x" * 501, "bell\x07", "new\nline", "tab\there", "nul\x00", "sep\u2028"],
)
async def test_bad_text_is_refused(server: LiveServer, text: str) -> None:
    session = await server.login("1001", "alice")
    async with server.connect(session) as chat:
        with pytest.raises(ChatError) as caught:
            await chat.publish(ROOM, text)
        assert caught.value.code == "invalid_text"
        assert await chat.history(ROOM) == []


@pytest.mark.parametrize("text", ["x" * 500, "emoji 👩‍👩‍👧 and ünïcödé", "全角　スペース"])
async def test_good_text_is_accepted(server: LiveServer, text: str) -> None:
    session = await server.login("1001", "alice")
    async with server.connect(session) as chat:
        await chat.publish(ROOM, text)
        assert [m.text for m in await chat.history(ROOM)] == [text]


async def test_rate_limit_like_twitch(server: LiveServer) -> None:
    session = await server.login("1001", "alice")
    async with server.connect(session) as chat:
        for i in range(20):
            await chat.publish(ROOM, f"m{i}")
        with pytest.raises(ChatError) as caught:
            await chat.publish(ROOM, "one too many")
        assert caught.value.code == "rate_limited"
        # How long to wait, for programs: the frame's details (the reason says it for people).
        assert 0 < caught.value.details["retry_after"] <= 30
        # The limit is per room.
        await chat.publish("lunatidestv", "elsewhere is fine")
        assert len(await chat.history(ROOM)) == 20


async def test_streamer_gets_100_in_their_own_room(server: LiveServer) -> None:
    streamer = await server.services.streamers.find(ROOM)
    assert streamer is not None
    session = await server.login(streamer.id, ROOM)
    async with server.connect(session) as chat:
        acks = [await chat.publish(ROOM, f"m{i}") for i in range(100)]
        assert acks[-1].seq == 100
        with pytest.raises(ChatError) as caught:
            await chat.publish(ROOM, "101st")
        assert caught.value.code == "rate_limited"


async def test_rate_limit_can_be_turned_off(server_factory: ServerFactory) -> None:
    async with server_factory(rate_limit=False) as server:
        session = await server.login("1001", "alice")
        async with server.connect(session) as chat:
            await asyncio.gather(*(chat.publish(ROOM, f"m{i}") for i in range(30)))
            assert len(await chat.history(ROOM)) == 30


async def test_too_many_subscriptions(server_factory: ServerFactory) -> None:
    async with server_factory(max_subscriptions=3) as server:
        rooms = [s.login for s in await server.services.streamers.all()][:4]
        async with server.connect() as chat:
            for room in rooms[:3]:
                await chat.subscribe(room)
            with pytest.raises(ChatError) as caught:
                await chat.subscribe(rooms[3])
            assert caught.value.code == "too_many_subscriptions"
            # Subscribing again to one it has is not a new subscription.
            assert (await chat.subscribe(rooms[0])).room == rooms[0]
            await chat.unsubscribe(rooms[0])
            assert (await chat.subscribe(rooms[3])).room == rooms[3]


async def test_persistent_misbehaviour_closes_the_connection(server: LiveServer) -> None:
    async with connect(ws_url(server)) as ws:
        await ws.send("\n".join(["{garbage"] * 30))
        assert await close_code(ws) == 1008


async def test_oversized_frame_closes_with_1009(server: LiveServer) -> None:
    async with connect(ws_url(server), max_size=None) as ws:
        await ws.send('{"type":"ping","pad":"' + "x" * (70 << 10) + '"}')
        assert await close_code(ws) == 1009
    async with connect(ws_url(server)) as ws:
        await ws.send('{"type":"ping","id":1}')
        assert await replies(ws, 1) == [{"type": "pong", "id": 1}]


async def test_binary_frames_are_read_as_json(server: LiveServer) -> None:
    async with connect(ws_url(server)) as ws:
        await ws.send(b'{"type":"ping","id":1}')
        assert await replies(ws, 1) == [{"type": "pong", "id": 1}]
        await ws.send(b"\xff\xfe")
        (error,) = await replies(ws, 1)
        assert error["code"] == "malformed_json"
