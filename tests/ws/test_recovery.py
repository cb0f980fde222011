"""Subscribing with `since`: everything missed, in order, before anything live; no gap, no dup."""

from __future__ import annotations

import asyncio

from streamchat.client import ChatClient
from tests import helpers
from tests.ws.conftest import ROOM, LiveServer, ServerFactory


async def test_resume_after_a_reconnect(server: LiveServer) -> None:
    session = await server.login("1001", "alice")
    async with server.connect(session) as writer:
        async with server.connect() as reader:
            first = await reader.subscribe(ROOM)
            for i in range(3):
                await writer.publish(ROOM, f"seen {i}")
            seen = await helpers.messages(reader, 3)
        last_seen = seen[-1].seq
        for i in range(5):
            await writer.publish(ROOM, f"missed {i}")
        async with server.connect() as reader:
            again = await reader.subscribe(ROOM, since=last_seen, epoch=first.epoch)
            assert again.recovered is True
            assert again.seq == 8
            assert again.epoch == first.epoch
            await writer.publish(ROOM, "live")
            messages = await helpers.messages(reader, 6)
    assert [m.seq for m in messages] == [4, 5, 6, 7, 8, 9]
    assert [m.text for m in messages] == [f"missed {i}" for i in range(5)] + ["live"]


async def test_since_zero_replays_everything(server: LiveServer) -> None:
    session = await server.login("1001", "alice")
    async with server.connect(session) as writer, server.connect() as reader:
        for i in range(4):
            await writer.publish(ROOM, f"m{i}")
        subscribed = await reader.subscribe(ROOM, since=0)
        assert subscribed.recovered is True
        assert [m.seq for m in await helpers.messages(reader, 4)] == [1, 2, 3, 4]


async def test_since_the_latest_is_recovered_with_nothing_to_replay(server: LiveServer) -> None:
    session = await server.login("1001", "alice")
    async with server.connect(session) as writer, server.connect() as reader:
        await writer.publish(ROOM, "old")
        subscribed = await reader.subscribe(ROOM, since=1)
        assert subscribed.recovered is True
        await writer.publish(ROOM, "new")
        assert [m.text for m in await helpers.messages(reader, 1)] == ["new"]


async def test_another_epoch_is_not_recovered(server: LiveServer) -> None:
    session = await server.login("1001", "alice")
    async with server.connect(session) as writer, server.connect() as reader:
        await writer.publish(ROOM, "old")
        await writer.publish(ROOM, "older still")
        subscribed = await reader.subscribe(ROOM, since=1, epoch="an-epoch-long-gone")
        assert subscribed.recovered is False
        await writer.publish(ROOM, "new")
        # Nothing from the unknown past; live messages flow.
        assert [m.text for m in await helpers.messages(reader, 1)] == ["new"]


async def test_since_zero_is_the_start_of_any_epoch(server: LiveServer) -> None:
    # A client that saw nothing (say, when the room was empty) misses nothing by
    # getting all of the current epoch.
    session = await server.login("1001", "alice")
    async with server.connect() as early:
        empty = await early.subscribe(ROOM)
    async with server.connect(session) as writer, server.connect() as reader:
        await writer.publish(ROOM, "first")
        subscribed = await reader.subscribe(ROOM, since=0, epoch=empty.epoch or "stale")
        assert subscribed.recovered is True
        assert [m.text for m in await helpers.messages(reader, 1)] == ["first"]


async def test_a_position_beyond_the_end_is_not_recovered(server: LiveServer) -> None:
    session = await server.login("1001", "alice")
    async with server.connect(session) as writer, server.connect() as reader:
        await writer.publish(ROOM, "only")
        subscribed = await reader.subscribe(ROOM, since=50)
        assert subscribed.recovered is False
        assert subscribed.seq == 1
        await writer.publish(ROOM, "next")
        assert [m.seq for m in await helpers.messages(reader, 1)] == [2]


async def test_resume_while_others_publish_is_gapless(server_factory: ServerFactory) -> None:
    async with server_factory(rate_limit=False) as server:
        session = await server.login("1001", "alice")
        async with server.connect(session) as w1, server.connect(session) as w2:
            for i in range(40):
                await w1.publish(ROOM, f"before {i}")

            acked = {"a": 0, "b": 0}

            async def publish(chat: ChatClient, tag: str) -> None:
                for i in range(60):
                    await chat.publish(ROOM, f"{tag} {i}")
                    acked[tag] += 1

            publishers = [
                asyncio.create_task(publish(w1, "a")),
                asyncio.create_task(publish(w2, "b")),
            ]
            # Both are publishing when the reader comes.
            await helpers.wait_for(lambda: all(acked.values()))
            async with server.connect() as reader:
                subscribed = await reader.subscribe(ROOM, since=10)
                assert subscribed.recovered is True
                await asyncio.gather(*publishers)
                messages = await helpers.messages(reader, 150)
        assert [m.seq for m in messages] == list(range(11, 161))


async def test_resubscribe_on_the_same_connection(server: LiveServer) -> None:
    session = await server.login("1001", "alice")
    async with server.connect(session) as writer, server.connect() as reader:
        await reader.subscribe(ROOM)
        for i in range(3):
            await writer.publish(ROOM, f"m{i}")
        assert [m.seq for m in await helpers.messages(reader, 3)] == [1, 2, 3]
        again = await reader.subscribe(ROOM, since=1)
        assert again.recovered is True
        assert [m.seq for m in await helpers.messages(reader, 2)] == [2, 3]
        await writer.publish(ROOM, "once")
        assert [m.text for m in await helpers.messages(reader, 1)] == ["once"]
        # Exactly once: nothing else arrives.
        assert await helpers.no_more_messages(reader, within=0.3) == []


async def test_a_long_replay_is_paced_by_the_reader(server_factory: ServerFactory) -> None:
    # More history than the outbox may hold at once: the replay goes page by
    # page, waiting for the connection to write each out.
    async with server_factory(rate_limit=False, ws_max_queued_bytes=64 << 10) as server:
        session = await server.login("1001", "alice")
        async with server.connect(session) as writer:
            await asyncio.gather(
                *(writer.publish(ROOM, f"{i:04d} " + "x" * 440) for i in range(400))
            )
        async with server.connect() as reader:
            subscribed = await reader.subscribe(ROOM, since=0)
            assert subscribed.recovered is True
            messages = await helpers.messages(reader, 400, within=20)
            assert [m.seq for m in messages] == list(range(1, 401))
            await reader.ping()
            assert not reader.closed
