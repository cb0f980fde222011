"""The contract every broker x store combination keeps (see conftest.COMBOS)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from streamchat.pubsub import Lagged, Message, PubSub, PubSubError, Subscription
from streamchat.pubsub.backends import Broker

from .conftest import (
    Combo,
    MakePubSub,
    cross_process,
    finish,
    nothing_more,
    receive,
    run_publisher,
    until,
)


async def test_publish_delivers_in_order_with_seq_growing_by_one(ps: PubSub, channel: str) -> None:
    async with ps.subscribe(channel) as sub:
        published = [await ps.publish(channel, f"m{i}".encode()) for i in range(30)]
        received = await receive(sub, 30)
    assert [m.seq for m in published] == list(range(1, 31))
    assert received == published
    assert {m.epoch for m in received} == {published[0].epoch}
    assert all(m.channel == channel and m.stored for m in received)
    assert await ps.last(channel) == (published[0].epoch, 30)


async def test_concurrent_publishes_get_gapless_seqs(ps: PubSub, channel: str) -> None:
    async with ps.subscribe(channel) as sub:
        published = await asyncio.gather(*(ps.publish(channel, b"x%d" % i) for i in range(60)))
        received = await receive(sub, 60)
    assert sorted(m.seq for m in published) == list(range(1, 61))
    assert [m.seq for m in received] == list(range(1, 61))


async def test_since_replays_what_was_missed_then_goes_live(ps: PubSub, channel: str) -> None:
    first = [await ps.publish(channel, b"%d" % i) for i in range(10)]
    epoch = first[0].epoch
    async with ps.subscribe(channel, since=(epoch, 4)) as sub:
        assert sub.recovered
        live = await ps.publish(channel, b"live")
        received = await receive(sub, 7)
        await nothing_more(sub)
    assert [m.seq for m in received] == [5, 6, 7, 8, 9, 10, 11]
    assert received[:-1] == first[4:]
    assert received[-1] == live
    assert sub.position == (epoch, 11)


async def test_since_on_an_empty_channel_and_at_the_end(ps: PubSub, channel: str) -> None:
    epoch, last = await ps.last(channel)
    assert last == 0
    async with ps.subscribe(channel, since=(epoch, 0)) as sub:
        assert sub.recovered
        await ps.publish(channel, b"a")
        assert [m.payload for m in await receive(sub, 1)] == [b"a"]
    async with ps.subscribe(channel, since=(epoch, 1)) as sub:
        assert sub.recovered
        await nothing_more(sub, 0.1)
    async with ps.subscribe(channel, since=(epoch, 5)) as sub:
        assert not sub.recovered  # a position from the future


async def test_a_position_ahead_of_the_dispatcher_gets_no_duplicate(
    ps: PubSub, channel: str
) -> None:
    # With the memory broker, b opens before the listener ran: its position is ahead of
    # what the dispatcher delivered, and m1 must not reach it again.
    async with ps.subscribe(channel) as a:
        m1 = await ps.publish(channel, b"1")
        async with ps.subscribe(channel, since=(m1.epoch, m1.seq)) as b:
            assert b.recovered
            m2 = await ps.publish(channel, b"2")
            assert await receive(b, 1) == [m2]
        assert await receive(a, 2) == [m1, m2]


async def test_since_is_gapless_against_concurrent_publishers(ps: PubSub, channel: str) -> None:
    total = 200

    async def publisher(tag: str) -> None:
        for i in range(total // 2):
            await ps.publish(channel, f"{tag}{i}".encode())
            await asyncio.sleep(0)

    epoch, _ = await ps.last(channel)
    tasks = [asyncio.create_task(publisher(tag)) for tag in "ab"]
    await until(lambda: _reached(ps, channel, 40))
    async with ps.subscribe(channel, since=(epoch, 20)) as sub:
        assert sub.recovered
        received = await receive(sub, total - 20)
    await asyncio.gather(*tasks)
    assert [m.seq for m in received] == list(range(21, total + 1))


@cross_process
async def test_since_is_gapless_against_two_publisher_processes(
    combo: Combo, ps: PubSub, channel: str
) -> None:
    count = 150
    epoch, _ = await ps.last(channel)
    async with ps.subscribe(channel, since=(epoch, 0)) as from_start:
        publishers = [await run_publisher(combo, channel, count, tag, 0.002) for tag in "ab"]
        await until(lambda: _reached(ps, channel, 30), within=20)
        async with ps.subscribe(channel, since=(epoch, 15)) as midway:
            assert midway.recovered
            late = await receive(midway, 2 * count - 15, within=30)
        early = await receive(from_start, 2 * count, within=30)
        for process in publishers:
            await finish(process)
    assert [m.seq for m in late] == list(range(16, 2 * count + 1))
    assert [m.seq for m in early] == list(range(1, 2 * count + 1))
    payloads = {m.payload for m in early}
    assert payloads == {f"{tag}:{i}".encode() for tag in "ab" for i in range(count)}


@cross_process
async def test_message_published_in_another_process_arrives(
    combo: Combo, ps: PubSub, channel: str
) -> None:
    async with ps.subscribe(channel) as sub:
        await finish(await run_publisher(combo, channel, 3, "ephemeral"))
        received = await receive(sub, 4)
    assert [(m.seq, m.payload) for m in received] == [
        (1, b"ephemeral:0"),
        (2, b"ephemeral:1"),
        (3, b"ephemeral:2"),
        (0, b"presence"),
    ]


async def test_ephemeral_messages_reach_live_subscribers_only(ps: PubSub, channel: str) -> None:
    async with ps.subscribe(channel) as sub:
        stored = await ps.publish(channel, b"stored")
        ephemeral = await ps.publish(channel, b"typing", store=False)
        assert ephemeral.seq == 0
        assert not ephemeral.stored
        assert ephemeral.epoch == ""
        received = await receive(sub, 2)
    assert [m.payload for m in received] == [b"stored", b"typing"]
    assert await ps.read(channel) == [stored]
    async with ps.subscribe(channel, since=(stored.epoch, 0)) as sub:
        assert await receive(sub, 1) == [stored]
        await nothing_more(sub, 0.1)
    with pytest.raises(ValueError, match="dedupe_key"):
        await ps.publish(channel, b"x", store=False, dedupe_key="k")


async def test_slow_subscriber_lags_without_blocking_others(ps: PubSub, channel: str) -> None:
    async with (
        ps.subscribe(channel, queue_size=5) as slow,
        ps.subscribe(channel, queue_size=100) as fast,
    ):
        await ps.publish(channel, b"first")
        assert [m.seq for m in await receive(slow, 1)] == [1]
        async with asyncio.timeout(5):  # the publisher is never held up by the slow one
            for i in range(40):
                await ps.publish(channel, b"%d" % i)
        assert [m.seq for m in await receive(fast, 41)] == list(range(1, 42))

        async def drain() -> None:
            async with asyncio.timeout(5):
                async for _ in slow:
                    pass

        with pytest.raises(Lagged) as caught:
            await drain()
        assert caught.value.last_seq == 1
        assert slow.closed
        with pytest.raises(Lagged):
            await anext(slow)
        # The remedy: resubscribe from where it stopped.
        async with ps.subscribe(channel, since=caught.value.since) as again:
            assert again.recovered
            assert [m.seq for m in await receive(again, 40)] == list(range(2, 42))
        await ps.publish(channel, b"after")
        assert [m.seq for m in await receive(fast, 1)] == [42]


async def test_a_lost_broadcast_is_filled_from_the_store(ps: PubSub, channel: str) -> None:
    async with ps.subscribe(channel) as sub:
        # Stored without a broadcast: as if the broker dropped it.
        lost, _ = await ps.store.append(channel, b"lost")
        await ps.publish(channel, b"next")
        received = await receive(sub, 2)
    assert [(m.seq, m.payload) for m in received] == [(1, b"lost"), (2, b"next")]
    assert received[0] == lost


async def test_the_sweep_delivers_a_lost_broadcast_on_a_quiet_channel(
    make_pubsub: MakePubSub, channel: str
) -> None:
    ps = await make_pubsub(sweep_interval=0.1)
    async with ps.subscribe(channel) as sub:
        await ps.store.append(channel, b"lost")
        assert [m.payload for m in await receive(sub, 1, within=5)] == [b"lost"]


async def test_large_payload_arrives_intact(ps: PubSub, channel: str) -> None:
    big = bytes(range(256)) * 100  # 25600 bytes: over PostgreSQL NOTIFY's 8000-byte limit
    async with ps.subscribe(channel) as sub:
        sent = await ps.publish(channel, big)
        received = await receive(sub, 1)
    assert received == [sent]
    assert received[0].payload == big
    if ps.broker.max_payload is not None and ps.broker.max_payload < len(big):
        with pytest.raises(PubSubError, match="limit"):
            await ps.publish(channel, big, store=False)


async def test_dedupe_key_returns_the_original(ps: PubSub, channel: str) -> None:
    async with ps.subscribe(channel) as sub:
        first = await ps.publish(channel, b"hello", dedupe_key="nonce-1")
        again = await ps.publish(channel, b"hello (retry)", dedupe_key="nonce-1")
        other = await ps.publish(channel, b"other", dedupe_key="nonce-2")
        received = await receive(sub, 2)
        await nothing_more(sub, 0.2)
    assert again == first
    assert (first.seq, other.seq) == (1, 2)
    assert received == [first, other]


async def test_concurrent_publishes_of_one_dedupe_key_store_once(ps: PubSub, channel: str) -> None:
    results = await asyncio.gather(
        *(ps.publish(channel, b"p%d" % i, dedupe_key="same") for i in range(12))
    )
    assert len(set(results)) == 1
    assert len(await ps.read(channel)) == 1
    assert (await ps.publish(channel, b"next")).seq == 2


async def test_history_and_read_page_oldest_first(ps: PubSub, channel: str) -> None:
    for i in range(1, 26):
        await ps.publish(channel, b"%d" % i)

    async def seqs(page: list[Message]) -> list[int]:
        return [m.seq for m in page]

    assert await seqs(await ps.history(channel, limit=10)) == list(range(16, 26))
    assert await seqs(await ps.history(channel, before=16, limit=10)) == list(range(6, 16))
    assert await seqs(await ps.history(channel, before=6, limit=10)) == list(range(1, 6))
    assert await ps.history(channel, before=1) == []
    assert await seqs(await ps.read(channel, after=0, limit=10)) == list(range(1, 11))
    assert await seqs(await ps.read(channel, after=20, limit=10)) == list(range(21, 26))
    assert await ps.read(channel, after=25) == []
    assert await ps.read(f"{channel}-unknown") == []
    page = await ps.read(channel, after=2, limit=1)
    assert page[0].payload == b"3"


async def test_retention_trims_history_and_since_tells(
    combo: Combo, make_pubsub: MakePubSub, channel: str
) -> None:
    sep = "&" if "?" in combo.store_url else "?"
    ps = await make_pubsub(store=f"{combo.store_url}{sep}max_messages=5")
    published = [await ps.publish(channel, b"%d" % i) for i in range(20)]
    epoch = published[0].epoch
    assert [m.seq for m in await ps.history(channel, limit=50)] == [16, 17, 18, 19, 20]
    async with ps.subscribe(channel, since=(epoch, 3)) as sub:
        assert not sub.recovered  # history no longer reaches back
        await ps.publish(channel, b"live")
        assert [m.seq for m in await receive(sub, 1)] == [21]
    async with ps.subscribe(channel, since=(epoch, 17)) as sub:
        assert sub.recovered
        assert [m.seq for m in await receive(sub, 4)] == [18, 19, 20, 21]


async def test_many_local_subscribers_share_one_broker_subscription(
    combo: Combo, make_pubsub: MakePubSub, channel: str
) -> None:
    counting = CountingBroker(PubSub(broker=combo.broker_url).broker)
    ps = await make_pubsub(broker=counting)
    async with asyncio.timeout(10):
        async with _many(ps, channel, 25) as subs:
            assert counting.calls == [("subscribe", channel)]
            await ps.publish(channel, b"to all")
            for sub in subs:
                assert [m.payload for m in await receive(sub, 1)] == [b"to all"]
        assert counting.calls == [("subscribe", channel), ("unsubscribe", channel)]
        async with ps.subscribe(channel):
            pass
    assert counting.calls[2:] == [("subscribe", channel), ("unsubscribe", channel)]


async def test_garbage_on_the_broker_is_logged_and_dropped(
    ps: PubSub, channel: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="streamchat.pubsub")
    async with ps.subscribe(channel) as sub:
        for garbage in (b"", b"\x00garbage", b"\x01" * 40):
            await ps.broker.publish(channel, garbage)
        await ps.publish(channel, b"fine")
        assert [m.payload for m in await receive(sub, 1)] == [b"fine"]

        async def logged() -> bool:
            return caplog.text.count("malformed envelope") == 3

        # "fine" reached the local subscriber directly; the garbage came through the broker.
        await until(logged)


async def test_the_store_losing_history_changes_the_epoch(
    combo: Combo, make_pubsub: MakePubSub, channel: str
) -> None:
    ps = await make_pubsub()
    async with ps.subscribe(channel) as live:
        old = [await ps.publish(channel, b"%d" % i) for i in range(3)]
        await receive(live, 3)
        if combo.store_kind == "memory":
            # A restarted process: a new memory store on the same broker.
            ps = await make_pubsub(store="memory://")
        else:
            from streamchat.pubsub.backends.stores.sql import SQLStore

            store = ps.store
            assert isinstance(store, SQLStore)
            async with store.engine.begin() as conn:
                await conn.execute(store.messages.delete())
                await conn.execute(store.channels.delete())
        epoch, last = await ps.last(channel)
        assert epoch != old[0].epoch
        assert last == 0
        async with ps.subscribe(channel, since=(old[0].epoch, 3)) as sub:
            assert not sub.recovered
            fresh = await ps.publish(channel, b"new era")
            assert (fresh.seq, fresh.epoch) == (1, epoch)
            assert await receive(sub, 1) == [fresh]
        if combo.store_kind != "memory":
            # A subscriber that lived through it follows into the new epoch.
            assert await receive(live, 1) == [fresh]


async def _reached(ps: PubSub, channel: str, seq: int) -> bool:
    return (await ps.last(channel))[1] >= seq


class CountingBroker(Broker):
    """Delegates to a real broker and records subscribe/unsubscribe calls."""

    def __init__(self, inner: Broker) -> None:
        self.inner = inner
        self.calls: list[tuple[str, str]] = []
        self.max_payload = inner.max_payload

    async def connect(self) -> None:
        await self.inner.connect()
        self.max_payload = self.inner.max_payload

    async def disconnect(self) -> None:
        await self.inner.disconnect()

    async def subscribe(self, channel: str) -> None:
        self.calls.append(("subscribe", channel))
        await self.inner.subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        self.calls.append(("unsubscribe", channel))
        await self.inner.unsubscribe(channel)

    async def publish(self, channel: str, data: bytes) -> None:
        await self.inner.publish(channel, data)

    async def next_published(self) -> bytes:
        return await self.inner.next_published()


class _many:
    """``async with _many(ps, channel, n) as subs``: n subscriptions at once."""

    def __init__(self, ps: PubSub, channel: str, n: int) -> None:
        from contextlib import AsyncExitStack

        self._stack = AsyncExitStack()
        self._ps, self._channel, self._n = ps, channel, n

    async def __aenter__(self) -> list[Subscription]:
        subs = []
        for _ in range(self._n):
            subs.append(await self._stack.enter_async_context(self._ps.subscribe(self._channel)))
        return subs

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()
