"""The room protocol end to end: a real server, real WebSockets, the Python client."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import websockets
from websockets.asyncio.client import connect

from streamchat.client import ChatError
from streamchat.protocol import Join, Leave, Pong, UserRef
from tests.helpers import next_message
from tests.ws.conftest import OTHER_ROOM, ROOM, LiveServer, ServerFactory, ws_url


def cookie_header(session: str) -> dict[str, str]:
    return {"Cookie": f"streamchat_session={session}"}


async def test_publish_is_stored_acked_and_delivered(server: LiveServer) -> None:
    alice = await server.login("1001", "alice")
    bob = await server.login("1002", "bob")
    async with server.connect(alice) as a, server.connect(bob) as b:
        subscribed = await a.subscribe(ROOM)
        assert subscribed.room == ROOM
        assert subscribed.seq == 0
        assert subscribed.recovered is False
        await b.subscribe(ROOM)

        before = int(time.time() * 1000)
        ack = await b.publish(ROOM, "hello room")
        assert ack.room == ROOM
        assert ack.seq == 1
        assert ack.message_id

        # Acked means stored: the history already has it.
        history = await a.history(ROOM)
        assert [(m.seq, m.text, m.message_id) for m in history] == [
            (1, "hello room", ack.message_id)
        ]

        for chat in (a, b):
            message = await next_message(chat)
            assert message.room == ROOM
            assert message.seq == 1
            assert message.message_id == ack.message_id
            assert message.text == "hello room"
            assert message.user.id == "1002"
            assert message.user.login == "bob"
            assert before <= message.ts <= int(time.time() * 1000)


async def test_messages_arrive_in_seq_order(server: LiveServer) -> None:
    session = await server.login("1001", "alice")
    async with server.connect(session) as reader, server.connect(session) as writer:
        await reader.subscribe(ROOM)
        acks = await asyncio.gather(*(writer.publish(ROOM, f"m{i}") for i in range(15)))
        assert sorted(a.seq for a in acks) == list(range(1, 16))
        seqs = [(await next_message(reader)).seq for _ in range(15)]
        assert seqs == list(range(1, 16))


async def test_rooms_are_separate(server: LiveServer) -> None:
    session = await server.login("1001", "alice")
    async with server.connect(session) as chat:
        await chat.subscribe(ROOM)
        await chat.publish(OTHER_ROOM, "elsewhere")
        await chat.publish(ROOM, "here")
        message = await next_message(chat)
        assert (message.room, message.text) == (ROOM, "here")
        assert (await chat.history(OTHER_ROOM))[0].text == "elsewhere"
        assert (await chat.history(OTHER_ROOM))[0].seq == 1


async def test_unsubscribe_stops_delivery(server: LiveServer) -> None:
    session = await server.login("1001", "alice")
    async with server.connect(session) as chat, server.connect() as watcher:
        await chat.subscribe(ROOM)
        await watcher.subscribe(ROOM)
        reply = await chat.unsubscribe(ROOM)
        assert reply.room == ROOM
        await chat.publish(ROOM, "after unsubscribe")
        assert (await next_message(watcher)).text == "after unsubscribe"
        with pytest.raises(TimeoutError):
            await next_message(chat, within=0.3)
        # Unsubscribing again is harmless.
        assert (await chat.unsubscribe(ROOM)).room == ROOM


async def test_anonymous_may_read_but_not_write(server: LiveServer) -> None:
    session = await server.login("1001", "alice")
    async with server.connect() as anon, server.connect(session) as alice:
        await anon.subscribe(ROOM)
        with pytest.raises(ChatError) as caught:
            await anon.publish(ROOM, "let me in")
        assert caught.value.code == "not_authenticated"
        await alice.publish(ROOM, "hi")
        assert (await next_message(anon)).text == "hi"
        assert [m.text for m in await anon.history(ROOM)] == ["hi"]
        # Anonymous readers are not present; logged-in subscribers are.
        assert (await anon.presence(ROOM)).count == 0
        await alice.subscribe(ROOM)
        assert [u.id for u in (await anon.presence(ROOM)).users] == ["1001"]


async def test_invalid_cookie_is_anonymous(server: LiveServer) -> None:
    async with server.connect("forged-token") as chat:
        await chat.subscribe(ROOM)
        with pytest.raises(ChatError) as caught:
            await chat.publish(ROOM, "x")
        assert caught.value.code == "not_authenticated"


async def test_same_nonce_is_stored_once(server: LiveServer) -> None:
    session = await server.login("1001", "alice")
    other = await server.login("1002", "bob")
    async with server.connect(session) as chat, server.connect(other) as bob:
        first = await chat.publish(ROOM, "only once", nonce="abc")
        again = await chat.publish(ROOM, "only once", nonce="abc")
        assert (again.seq, again.message_id) == (first.seq, first.message_id)
        # Concurrent retries with one nonce still store one message.
        racing = await asyncio.gather(*(chat.publish(ROOM, "race", nonce="n2") for _ in range(5)))
        assert len({(a.seq, a.message_id) for a in racing}) == 1
        # Nonces are per user: bob's "abc" is a new message.
        bobs = await bob.publish(ROOM, "mine", nonce="abc")
        assert bobs.seq != first.seq
        texts = [m.text for m in await chat.history(ROOM)]
        assert texts == ["only once", "race", "mine"]


async def test_history_pages_backwards(server: LiveServer) -> None:
    session = await server.login("1001", "alice")
    async with server.connect(session) as chat:
        for i in range(1, 13):
            await chat.publish(ROOM, f"m{i}")
        newest = await chat.history(ROOM, limit=5)
        assert [m.seq for m in newest] == [8, 9, 10, 11, 12]
        older = await chat.history(ROOM, before=8, limit=5)
        assert [m.seq for m in older] == [3, 4, 5, 6, 7]
        oldest = await chat.history(ROOM, before=3, limit=5)
        assert [m.seq for m in oldest] == [1, 2]
        assert await chat.history(ROOM, before=1) == []
        assert await chat.history(OTHER_ROOM) == []


async def test_history_is_capped_at_100(server_factory: object) -> None:
    async with server_factory(rate_limit=False) as server:  # type: ignore[operator]
        session = await server.login("1001", "alice")
        async with server.connect(session) as chat:
            await asyncio.gather(*(chat.publish(ROOM, f"m{i}") for i in range(120)))
            page = await chat.history(ROOM, limit=1000)
            assert [m.seq for m in page] == list(range(21, 121))


async def test_ping(server: LiveServer) -> None:
    async with server.connect() as chat:
        assert isinstance(await chat.ping(), Pong)
    async with connect(ws_url(server)) as ws:
        await ws.send('{"type":"ping","id":"abc"}')
        assert await ws.recv() == '{"type":"pong","id":"abc"}'
        await ws.send('{"type":"ping"}')
        assert await ws.recv() == '{"type":"pong"}'


async def test_several_objects_in_one_frame(server: LiveServer) -> None:
    async with connect(ws_url(server)) as ws:
        await ws.send(
            '{"type":"ping","id":1}\n{"type":"subscribe","id":2,"room":"pixelpaladin"}\n\n'
            '{"type":"ping","id":3}'
        )
        replies: list[str] = []
        async with asyncio.timeout(5):
            while len(replies) < 3:
                frame = await ws.recv()
                assert isinstance(frame, str)
                replies.extend(frame.split("\n"))
        assert replies[0] == '{"type":"pong","id":1}'
        assert '"type":"subscribed"' in replies[1]
        assert '"id":2' in replies[1]
        assert replies[2] == '{"type":"pong","id":3}'


async def test_writes_are_coalesced_under_load(server: LiveServer) -> None:
    async with connect(ws_url(server)) as ws:
        await ws.send('{"type":"subscribe","id":1,"room":"pixelpaladin"}')
        await ws.recv()
        # Events skip the store, so a burst reaches the connection faster than it writes.
        rooms = server.services.rooms
        await asyncio.gather(*(rooms.announce(ROOM, "burst", {"i": i}) for i in range(200)))
        frames: list[str] = []
        objects: list[str] = []
        async with asyncio.timeout(10):
            while len(objects) < 200:
                frame = await ws.recv()
                assert isinstance(frame, str)
                frames.append(frame)
                objects.extend(frame.split("\n"))
        assert [json.loads(o)["data"]["i"] for o in objects] == list(range(200))
        assert len(frames) < 20


async def test_join_and_leave_are_announced(server: LiveServer) -> None:
    alice = await server.login("1001", "alice")
    bob = await server.login("1002", "bob")
    async with server.connect(alice) as a:
        await a.subscribe(ROOM)
        assert await a.next_event(5) == Join(room=ROOM, user=UserRef("1001", "alice", "alice"))
        async with server.connect(bob) as b:
            await b.subscribe(ROOM)
            assert await a.next_event(5) == Join(room=ROOM, user=UserRef("1002", "bob", "bob"))
            # A second connection of the same user is no new arrival.
            async with server.connect(bob) as b2:
                await b2.subscribe(ROOM)
                await b2.unsubscribe(ROOM)
        assert await a.next_event(5) == Leave(room=ROOM, user=UserRef("1002", "bob", "bob"))


async def test_cross_site_handshake_is_refused(server: LiveServer) -> None:
    session = await server.login("1001", "alice")
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with server.connect(session, origin="https://evil.example"):
            pass
    assert refused.value.response.status_code == 403
    # The server's own origin is fine.
    async with server.connect(session, origin=server.url) as chat:
        await chat.ping()


async def test_pipelined_publishes_are_all_stored_in_order(server_factory: ServerFactory) -> None:
    async with server_factory(rate_limit=False) as server:
        session = await server.login("1001", "alice")
        async with connect(ws_url(server), additional_headers=cookie_header(session)) as ws:
            # 200 publishes in a few frames, without waiting for any ack.
            lines = [
                json.dumps({"type": "publish", "id": i, "room": ROOM, "text": f"p{i}"})
                for i in range(200)
            ]
            for start in range(0, 200, 50):
                await ws.send("\n".join(lines[start : start + 50]))
            acks: list[dict[str, object]] = []
            async with asyncio.timeout(20):
                while len(acks) < 200:
                    frame = await ws.recv()
                    acks.extend(json.loads(line) for line in str(frame).split("\n"))
        assert [a["type"] for a in acks] == ["ack"] * 200
        assert [a["id"] for a in acks] == list(range(200))
        assert [a["seq"] for a in acks] == list(range(1, 201))
        async with server.connect() as reader:
            stored = await reader.history(ROOM, limit=100)
        assert [m.text for m in stored] == [f"p{i}" for i in range(100, 200)]


async def test_crowded_rooms_announce_no_joins(server_factory: ServerFactory) -> None:
    async with server_factory(presence_announce_limit=2) as server:
        sessions = [await server.login(str(1001 + i), f"user{i}") for i in range(3)]
        async with (
            server.connect(sessions[0]) as first,
            server.connect(sessions[1]) as second,
            server.connect(sessions[2]) as third,
        ):
            await first.subscribe(ROOM)
            assert (await first.next_event(5)).user.id == "1001"  # type: ignore[union-attr]
            await second.subscribe(ROOM)
            assert (await first.next_event(5)).user.id == "1002"  # type: ignore[union-attr]
            # Two present: the third arrives unannounced, but is counted.
            await third.subscribe(ROOM)
            with pytest.raises(TimeoutError):
                await first.next_event(0.3)
            assert (await first.presence(ROOM)).count == 3
