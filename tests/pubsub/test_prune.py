"""Store.prune, the bounded retention primitive, on every store (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from streamchat.pubsub import Message, PubSub, Store
from streamchat.pubsub.backends.stores import sql
from streamchat.pubsub.backends.stores.memory import MemoryStore
from streamchat.pubsub.backends.stores.sql import SQLStore
from tests.helpers import wait_for

from .conftest import receive, store_url

#: Pruning passes that delete something while both publishers are still going, for
#: the publishing-while-pruning test to have shown anything.
OVERLAPPING_PRUNES = 50

HOUR = 3600.0


class Clock:
    """The memory store's clock: the real time, unless a test sets ``at``."""

    def __init__(self) -> None:
        self.at: float | None = None

    def __call__(self) -> float:
        return time.time() if self.at is None else self.at


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return store_url(request, request.param, tmp_path)


@pytest.fixture
async def ps(url: str, clock: Clock) -> AsyncIterator[PubSub]:
    store: Store = MemoryStore(url, clock=clock) if url.startswith("memory") else SQLStore(url)
    broker = f"memory://{uuid.uuid4().hex}"
    async with PubSub(broker=broker, store=store, sweep_interval=None) as pubsub:
        yield pubsub


PublishAt = Callable[[str, int, float], Awaitable[list[Message]]]


@pytest.fixture
def publish_at(ps: PubSub, clock: Clock) -> PublishAt:
    """Publish ``count`` messages to ``channel`` stored as created at ``when``."""

    async def publish(channel: str, count: int, when: float) -> list[Message]:
        store = ps.store
        if not isinstance(store, SQLStore):
            clock.at = when
            try:
                return [await ps.publish(channel, b"%d" % i) for i in range(count)]
            finally:
                clock.at = None
        published = [await ps.publish(channel, b"%d" % i) for i in range(count)]
        table = store.messages
        async with store.engine.begin() as conn:
            await conn.execute(
                table.update()
                .where(
                    table.c.channel == channel,
                    table.c.seq.between(published[0].seq, published[-1].seq),
                )
                .values(created_at=when)
            )
        return published

    return publish


async def seqs(ps: PubSub, channel: str) -> list[int]:
    return [m.seq for m in await ps.read(channel, after=0, limit=1000)]


def contiguous(seqs: list[int]) -> bool:
    return seqs == list(range(seqs[0], seqs[0] + len(seqs))) if seqs else True


async def prune_all(
    ps: PubSub, *, older_than: float | None = None, keep_last: int | None = None, limit: int = 1000
) -> list[int]:
    """Prune until a call returns less than its limit; return what each call deleted."""
    counts: list[int] = []
    while not counts or counts[-1] == limit:
        counts.append(await ps.prune(older_than=older_than, keep_last=keep_last, limit=limit))
        assert counts[-1] <= limit
        assert len(counts) < 1000, "prune does not finish"
    return counts


async def test_keep_last_trims_the_oldest_of_each_channel(ps: PubSub, channel: str) -> None:
    long, short, other = f"{channel}-long", f"{channel}-short", f"{channel}-other"
    for name, count in ((long, 10), (short, 3), (other, 5)):
        for i in range(count):
            await ps.publish(name, b"%d" % i)
    before = {name: await ps.last(name) for name in (long, short, other)}

    assert await ps.prune(keep_last=4) == 6 + 1

    assert await seqs(ps, long) == [7, 8, 9, 10]
    assert await seqs(ps, short) == [1, 2, 3]
    assert await seqs(ps, other) == [2, 3, 4, 5]
    assert {name: await ps.last(name) for name in before} == before
    assert await ps.prune(keep_last=4) == 0


async def test_keep_last_zero_empties_channels_and_seqs_go_on(ps: PubSub, channel: str) -> None:
    published = [await ps.publish(channel, b"%d" % i) for i in range(5)]
    assert await ps.prune(keep_last=0) == 5
    assert await seqs(ps, channel) == []
    assert await ps.history(channel) == []
    assert await ps.last(channel) == (published[0].epoch, 5)
    after = await ps.publish(channel, b"after")
    assert (after.epoch, after.seq) == (published[0].epoch, 6)
    assert await seqs(ps, channel) == [6]


async def test_older_than_trims_by_age(ps: PubSub, channel: str, publish_at: PublishAt) -> None:
    now = time.time()
    mixed, old = f"{channel}-mixed", f"{channel}-old"
    await publish_at(mixed, 5, now - 3 * HOUR)
    await publish_at(mixed, 4, now - 1 * HOUR)
    await publish_at(old, 3, now - 3 * HOUR)
    epoch = (await ps.last(mixed))[0]

    assert await ps.prune(older_than=now - 2 * HOUR) == 5 + 3

    assert await seqs(ps, mixed) == [6, 7, 8, 9]
    assert await seqs(ps, old) == []
    assert await ps.last(mixed) == (epoch, 9)
    assert (await ps.last(old))[1] == 3
    assert (await ps.publish(old, b"new")).seq == 4
    assert await ps.prune(older_than=now - 2 * HOUR) == 0


async def test_either_criterion_prunes(ps: PubSub, channel: str, publish_at: PublishAt) -> None:
    now = time.time()
    busy, quiet = f"{channel}-busy", f"{channel}-quiet"
    await publish_at(busy, 10, now)  # recent, but too many
    await publish_at(quiet, 2, now - 3 * HOUR)  # few, but too old
    await publish_at(quiet, 1, now)

    assert await ps.prune(older_than=now - HOUR, keep_last=6) == 4 + 2

    assert await seqs(ps, busy) == [5, 6, 7, 8, 9, 10]
    assert await seqs(ps, quiet) == [3]


async def test_age_never_leaves_a_hole(ps: PubSub, channel: str, publish_at: PublishAt) -> None:
    # Clocks can step back: a later seq may look older. The history stays contiguous.
    now = time.time()
    await publish_at(channel, 2, now - 3 * HOUR)
    await publish_at(channel, 1, now)
    await publish_at(channel, 2, now - 3 * HOUR)

    assert await ps.prune(older_than=now - HOUR) == 2
    assert await seqs(ps, channel) == [3, 4, 5]


@pytest.mark.parametrize("criterion", ["keep_last", "older_than"])
async def test_limit_bounds_each_call_and_repeated_calls_finish(
    ps: PubSub,
    channel: str,
    publish_at: PublishAt,
    monkeypatch: pytest.MonkeyPatch,
    criterion: str,
) -> None:
    # Few channels per query, so the SQL stores page through them and wrap around.
    monkeypatch.setattr(sql, "_PRUNE_CHANNELS", 4)
    now = time.time()
    names = [f"{channel}-{i:02}" for i in range(11)]
    for name in names:
        await publish_at(name, 6, now - 3 * HOUR)
        await publish_at(name, 2, now)
    if criterion == "keep_last":
        counts = await prune_all(ps, keep_last=2, limit=5)
    else:
        counts = await prune_all(ps, older_than=now - HOUR, limit=5)

    assert sum(counts) == 11 * 6
    assert counts[:-1] == [5] * (len(counts) - 1)
    for name in names:
        assert await seqs(ps, name) == [7, 8]
        assert (await ps.last(name))[1] == 8


async def test_positions_stay_valid_and_since_tells(ps: PubSub, channel: str) -> None:
    published = [await ps.publish(channel, b"%d" % i) for i in range(10)]
    epoch = published[0].epoch
    assert await ps.prune(keep_last=4) == 6

    assert await ps.last(channel) == (epoch, 10)
    assert await ps.read(channel, after=0, limit=2) == published[6:8]
    assert await ps.read(channel, after=3) == published[6:]
    assert await ps.history(channel, before=9) == published[6:8]

    async with ps.subscribe(channel, since=(epoch, 5)) as sub:
        assert not sub.recovered  # seq 6 is gone
        live = await ps.publish(channel, b"live")
        assert await receive(sub, 1) == [live]
    async with ps.subscribe(channel, since=(epoch, 6)) as sub:
        assert sub.recovered  # the history still reaches back to seq 7
        assert [m.seq for m in await receive(sub, 5)] == [7, 8, 9, 10, 11]


async def test_dedupe_keys_of_retained_messages_hold(ps: PubSub, channel: str) -> None:
    first = await ps.publish(channel, b"a", dedupe_key="k1")
    second = await ps.publish(channel, b"b", dedupe_key="k2")
    assert await ps.prune(keep_last=1) == 1

    assert await ps.publish(channel, b"b again", dedupe_key="k2") == second
    again = await ps.publish(channel, b"a again", dedupe_key="k1")
    assert again != first  # the pruned message's key is forgotten
    assert (again.seq, again.payload) == (3, b"a again")
    assert await seqs(ps, channel) == [2, 3]


async def test_publishing_while_pruning_loses_nothing_kept(ps: PubSub, channel: str) -> None:
    names = [f"{channel}-a", f"{channel}-b"]
    keep, most = 15, 1500
    published: dict[str, list[Message]] = {name: [] for name in names}
    stop = asyncio.Event()

    async def publisher(name: str) -> None:
        while not stop.is_set() and len(published[name]) < most:
            # A few at once, so the SQL store group-commits them.
            batch = await asyncio.gather(*(ps.publish(name, b"x") for _ in range(3)))
            published[name].extend(batch)

    overlapping = 0  # passes of the pruner that deleted while both publishers went on

    def publishing() -> bool:
        return not any(task.done() for task in tasks)

    async def pruner() -> int:
        nonlocal overlapping
        deleted = 0
        while not stop.is_set():
            before = publishing()
            pruned = await ps.prune(keep_last=keep, limit=7)
            deleted += pruned
            if pruned and before and publishing():
                overlapping += 1
            for name in names:
                assert contiguous(await seqs(ps, name))
            await asyncio.sleep(0)
        return deleted

    async with ps.subscribe(names[0], queue_size=2 * most) as sub:
        tasks = [asyncio.create_task(publisher(name)) for name in names]
        # Every channel has messages before the pruner looks.
        await wait_for(lambda: all(published.values()))
        pruning = asyncio.create_task(pruner())
        await wait_for(lambda: overlapping >= OVERLAPPING_PRUNES or not publishing(), 30)
        assert overlapping >= OVERLAPPING_PRUNES, "the publishers were done before the pruner"
        stop.set()
        await asyncio.gather(*tasks)
        deleted = await pruning
        total = len(published[names[0]])
        # A live subscriber gets everything, pruned or not.
        assert [m.seq for m in await receive(sub, total)] == list(range(1, total + 1))

    deleted += sum(await prune_all(ps, keep_last=keep))
    assert deleted == sum(len(messages) - keep for messages in published.values())
    for name in names:
        count = len(published[name])
        assert sorted(m.seq for m in published[name]) == list(range(1, count + 1))
        assert await ps.read(name, after=0) == sorted(published[name], key=lambda m: m.seq)[-keep:]
        assert (await ps.last(name))[1] == count


@pytest.mark.parametrize("url", ["sqlite", "postgres"], indirect=True)
async def test_two_processes_trimming_and_pruning_at_once_fail_nothing(url: str) -> None:
    # Two stores on one database are two processes: each group commit trims (max_messages)
    # several channels in its own order while both prune. On PostgreSQL a prune that
    # waited for the trims' row locks would deadlock with them.
    stores = [SQLStore(url, max_messages=20) for _ in range(2)]
    for store in stores:
        await store.connect()
    names = [f"room:{uuid.uuid4().hex}" for _ in range(6)]
    for name in names:
        await stores[0].last(name)  # channel rows first: creating them is not what is tested
    appended = dict.fromkeys(names, 0)
    deadline = time.monotonic() + 2.0

    async def append(store: SQLStore) -> None:
        while time.monotonic() < deadline:
            order = random.sample(names, len(names))
            await asyncio.gather(*(store.append(name, b"x") for name in order for _ in range(3)))
            for name in names:
                appended[name] += 3

    async def prune(store: SQLStore) -> None:
        while time.monotonic() < deadline:
            await store.prune(older_than=time.time() + HOUR, keep_last=5, limit=13)

    try:
        await asyncio.gather(*(work(store) for store in stores for work in (append, prune)))
        for name in names:
            _, last = await stores[0].last(name)
            assert last == appended[name]
            retained = [m.seq for m in await stores[1].read(name, limit=100)]
            assert contiguous(retained)
            assert not retained or retained[-1] == last
    finally:
        for store in stores:
            await store.disconnect()


async def test_prune_on_an_empty_store_returns_zero(ps: PubSub, channel: str) -> None:
    assert await ps.prune(keep_last=0) == 0
    assert await ps.prune(older_than=time.time() + HOUR) == 0
    await ps.last(channel)  # a channel without messages
    assert await ps.prune(keep_last=0, older_than=time.time() + HOUR) == 0


async def test_arguments_are_checked(ps: PubSub) -> None:
    with pytest.raises(ValueError, match="older_than or keep_last"):
        await ps.prune()
    with pytest.raises(ValueError, match="limit"):
        await ps.prune(keep_last=1, limit=0)
    with pytest.raises(ValueError, match="keep_last"):
        await ps.prune(keep_last=-1)


class _ThirdPartyStore(Store):
    async def connect(self) -> None:
        pass

    async def disconnect(self) -> None:
        pass

    async def append(
        self, channel: str, payload: bytes, *, dedupe_key: str | None = None
    ) -> tuple[Message, bool]:
        raise NotImplementedError

    async def read(self, channel: str, *, after: int = 0, limit: int = 100) -> list[Message]:
        return []

    async def history(
        self, channel: str, *, before: int | None = None, limit: int = 50
    ) -> list[Message]:
        return []

    async def last(self, channel: str) -> tuple[str, int]:
        return "e", 0


async def test_a_store_without_prune_says_so() -> None:
    store = _ThirdPartyStore()
    with pytest.raises(NotImplementedError, match="_ThirdPartyStore"):
        await store.prune(keep_last=1)
    with pytest.raises(ValueError, match="limit"):
        await store.prune(keep_last=1, limit=0)
