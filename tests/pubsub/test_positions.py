"""First subscribers of many channels at once read their positions in one query."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from streamchat.pubsub import PubSub, StoreError
from streamchat.pubsub.backends.brokers.memory import MemoryBroker
from streamchat.pubsub.backends.stores.memory import MemoryStore


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.many_calls: list[list[str]] = []
        self.single_calls: list[str] = []

    async def last_many(self, channels: Iterable[str]) -> dict[str, tuple[str, int]]:
        names = list(channels)
        self.many_calls.append(names)
        # Like the SQL store: channels never used are missing from the answer.
        found = {}
        for name in names:
            if name.startswith("used"):
                found[name] = await MemoryStore.last(self, name)
        return found

    async def last(self, channel: str) -> tuple[str, int]:
        self.single_calls.append(channel)
        return await super().last(channel)


async def test_a_burst_of_first_subscriptions_shares_one_lookup() -> None:
    store = CountingStore()
    pubsub = PubSub(broker=MemoryBroker(), store=store)
    await pubsub.connect()
    try:
        for name in ("used-a", "used-b"):
            await pubsub.publish(name, b"before")
        store.many_calls.clear()
        store.single_calls.clear()

        async def first_subscriber(channel: str) -> tuple[str, int]:
            async with pubsub.subscribe(channel) as sub:
                return sub.position

        channels = ["used-a", "used-b", "new-c", "new-d"]
        positions = await asyncio.gather(*(first_subscriber(c) for c in channels))
        assert [set(call) for call in store.many_calls] == [set(channels)]  # one read for all
        assert sorted(store.single_calls) == ["new-c", "new-d"]  # only the unknown ones
        assert [seq for _, seq in positions] == [1, 1, 0, 0]
        # The new channels' epochs are fixed: a publish continues from them.
        message = await pubsub.publish("new-c", b"after")
        assert (message.epoch, message.seq) == (positions[2][0], 1)
    finally:
        await pubsub.disconnect()


class FailingOnceStore(CountingStore):
    def __init__(self) -> None:
        super().__init__()
        self.fail = True

    async def last_many(self, channels: Iterable[str]) -> dict[str, tuple[str, int]]:
        if self.fail:
            self.fail = False
            raise StoreError("the database went away")
        return await super().last_many(channels)


async def test_a_failed_read_fails_its_subscribers_and_the_next_one_reads_again() -> None:
    store = FailingOnceStore()
    pubsub = PubSub(broker=MemoryBroker(), store=store)
    await pubsub.connect()
    try:

        async def first_subscriber(channel: str) -> tuple[str, int]:
            async with pubsub.subscribe(channel) as sub:
                return sub.position

        results = await asyncio.gather(
            first_subscriber("used-a"), first_subscriber("new-b"), return_exceptions=True
        )
        assert all(isinstance(result, StoreError) for result in results), results
        assert await first_subscriber("used-a") == (await store.last("used-a"))
    finally:
        await pubsub.disconnect()
