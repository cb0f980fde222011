"""RoomFeeds: one subscription per room, kept a while after its last member leaves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from streamchat.pubsub import PubSub
from streamchat.rooms.feeds import Batch, RoomFeeds, channel_of
from tests.helpers import wait_for


class Recorder:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def deliver(self, frame: bytes) -> None:
        self.frames.append(frame)

    def deliver_batch(self, batch: Batch) -> None:
        self.frames.extend(batch.frames)

    def overflow(self) -> None:
        raise AssertionError("not expected to overflow")

    async def drained(self) -> None:
        return None


@pytest.fixture
async def pubsub() -> AsyncIterator[PubSub]:
    pubsub = PubSub(broker="memory://", store="memory://")
    await pubsub.connect()
    yield pubsub
    await pubsub.disconnect()


async def test_a_feed_outlives_its_last_member_by_the_linger(pubsub: PubSub) -> None:
    linger = 0.2
    loop = asyncio.get_running_loop()
    feeds = RoomFeeds(pubsub, linger=linger)
    first, second = Recorder(), Recorder()
    feed = await feeds.add("room", first, parked=False)
    await feeds.discard("room", first)
    assert feeds.get("room") is feed  # lingering, still subscribed

    # Back within the linger: the same subscription, and it still delivers.
    assert await feeds.add("room", second, parked=False) is feed
    await pubsub.publish(channel_of("room"), b'{"text":"hello"}')
    await wait_for(lambda: second.frames)
    assert second.frames[-1].endswith(b'"text":"hello"}')

    # The last member leaves half a linger later: the feed lingers a whole one from then,
    # so the timer of the first leave, which would end it sooner, was cancelled on re-add.
    await asyncio.sleep(linger / 2)
    left = loop.time()
    await feeds.discard("room", second)
    assert feeds.get("room") is feed
    await wait_for(lambda: feeds.get("room") is None, within=5.0)
    assert loop.time() - left >= linger
    await feeds.close()


async def test_without_linger_the_last_member_closes_the_feed(pubsub: PubSub) -> None:
    feeds = RoomFeeds(pubsub, linger=0)
    member = Recorder()
    await feeds.add("room", member, parked=False)
    await feeds.discard("room", member)
    assert feeds.get("room") is None
    await feeds.close()


async def test_close_stops_lingering_feeds(pubsub: PubSub) -> None:
    feeds = RoomFeeds(pubsub, linger=60)
    member = Recorder()
    await feeds.add("room", member, parked=False)
    await feeds.discard("room", member)
    await feeds.close()
    assert feeds.get("room") is None
