"""Retention prunes history; recovery with ``since`` then says what is gone, never a silent gap."""

from __future__ import annotations

import msgspec

from streamchat.protocol import ErrorFrame
from streamchat.rooms.feeds import Batch, channel_of
from tests.helpers import messages
from tests.ws.conftest import ROOM, ServerFactory


async def test_subscribing_since_pruned_history_says_where_it_begins(
    server_factory: ServerFactory,
) -> None:
    async with server_factory(
        run_singletons=True,
        retention_max_messages=3,
        retention_interval=3600,
        watch_interval=3600,
    ) as server:
        token = await server.login("1001", "alice")
        async with server.connect(token) as chat:
            first = await chat.subscribe(ROOM)
            for i in range(10):
                await chat.publish(ROOM, f"m{i}")
        reply = await server.services.cluster.command("retention", "prune", {})
        assert reply == {"deleted": 7}

        async with server.connect(token) as chat:
            again = await chat.subscribe(ROOM, since=2, epoch=first.epoch)
            assert again.recovered is False
            assert again.oldest == 8
            assert again.seq == 10
            # What is kept is replayed after the reply: 8, 9, 10, and nothing else.
            assert [m.seq for m in await messages(chat, 3)] == [8, 9, 10]
            assert [m.seq for m in await chat.history(ROOM)] == [8, 9, 10]
            # From within what is kept, recovery is whole again.
            whole = await chat.subscribe(ROOM, since=8, epoch=first.epoch)
            assert whole.recovered is True
            assert whole.oldest is None
            assert [m.seq for m in await messages(chat, 2)] == [9, 10]
        # Seqs go on from where they were: pruning never renumbers.
        async with server.connect(token) as chat:
            ack = await chat.publish(ROOM, "after")
            assert ack.seq == 11


class _Pruning:
    """A member that lets retention strike between two pages of its replay."""

    def __init__(self, prune: object) -> None:
        self.frames: list[bytes] = []
        self._prune = prune
        self._pruned = False

    def deliver(self, frame: bytes) -> None:
        self.frames.append(frame)

    def deliver_batch(self, batch: Batch) -> None:
        self.frames.extend(batch.frames)

    def overflow(self) -> None:
        raise AssertionError("not expected")

    async def drained(self) -> None:
        if not self._pruned:
            self._pruned = True
            await self._prune()  # type: ignore[operator]


async def test_history_pruned_during_a_replay_is_reported(server_factory: ServerFactory) -> None:
    async with server_factory(rate_limit=False) as server:
        token = await server.login("1001", "alice")
        async with server.connect(token) as chat:
            for i in range(250):
                await chat.publish(ROOM, f"m{i}")
        pubsub = server.services.pubsub
        rooms = server.services.rooms

        async def prune() -> None:
            while await pubsub.prune(keep_last=50, limit=1000) == 1000:
                pass

        member = _Pruning(prune)
        await rooms.subscribe(member, ROOM, None, since=0, request_id=7)
        try:
            frames = [msgspec.json.decode(frame) for frame in member.frames]
            assert frames[0]["type"] == "subscribed"
            assert frames[0]["recovered"] is True
            seqs = [f["seq"] for f in frames if f["type"] == "message"]
            # The first page went out whole; then 101..200 were pruned, and the client is told.
            assert seqs == [*range(1, 101), *range(201, 251)]
            (error,) = [f for f in frames if f["type"] == "error"]
            assert error["code"] == "history_trimmed"
            assert error["id"] == 7
            position = frames.index(error)
            assert frames[position - 1]["seq"] == 100
            assert frames[position + 1]["seq"] == 201
            assert msgspec.convert(error, ErrorFrame).reason.startswith("messages 101 to 200")
        finally:
            await rooms.unsubscribe(member, ROOM, None)
        assert (await pubsub.last(channel_of(ROOM)))[1] == 250
