"""Store.redact: messages taken out of history, their seqs kept (tombstones), on every store."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from streamchat.pubsub import PubSub, Store
from streamchat.pubsub.backends.stores.memory import MemoryStore
from streamchat.pubsub.backends.stores.sql import SQLStore

from .conftest import receive, store_url


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return store_url(request, request.param, tmp_path)


@pytest.fixture
async def ps(url: str) -> AsyncIterator[PubSub]:
    store: Store = MemoryStore(url) if url.startswith("memory") else SQLStore(url)
    async with PubSub(broker=f"memory://{uuid.uuid4().hex}", store=store) as pubsub:
        yield pubsub


async def test_redacted_messages_keep_their_place(ps: PubSub, channel: str) -> None:
    for i in range(1, 7):
        await ps.publish(channel, b"m%d" % i, dedupe_key=f"k{i}")
    assert await ps.redact(channel, [2, 4, 99]) == [2, 4]
    # Again: nothing more to redact.
    assert await ps.redact(channel, [2]) == []
    read = await ps.read(channel, after=0)
    assert [m.seq for m in read] == [1, 2, 3, 4, 5, 6]
    assert [m.payload for m in read] == [b"m1", b"", b"m3", b"", b"m5", b"m6"]
    assert [m.redacted for m in read] == [False, True, False, True, False, False]
    history = await ps.history(channel, before=5, limit=3)
    assert [(m.seq, m.redacted) for m in history] == [(2, True), (3, False), (4, True)]
    # A replay after a redaction is as gapless as before.
    pages = [page async for page in ps.replay(channel, after=1, until=6)]
    assert [m.seq for page in pages for m in page] == [2, 3, 4, 5, 6]
    # The dedupe key stays: a retry of a redacted message is not stored again.
    again = await ps.publish(channel, b"m2", dedupe_key="k2")
    assert (again.seq, again.redacted) == (2, True)
    assert (await ps.last(channel))[1] == 6


async def test_redact_through_clears_everything_up_to_a_seq(ps: PubSub, channel: str) -> None:
    other = f"{channel}-other"
    for i in range(5):
        await ps.publish(channel, b"x%d" % i)
        await ps.publish(other, b"y%d" % i)
    assert await ps.redact(channel, [5], through=3) == [1, 2, 3, 5]
    assert [m.redacted for m in await ps.read(channel)] == [True, True, True, False, True]
    # Other channels are untouched.
    assert not any(m.redacted for m in await ps.read(other))
    # Messages published afterwards are not affected.
    await ps.publish(channel, b"after")
    assert (await ps.read(channel, after=5))[0].payload == b"after"


async def test_a_subscriber_recovering_sees_tombstones(ps: PubSub, channel: str) -> None:
    first = await ps.publish(channel, b"a")
    epoch = first.epoch
    await ps.publish(channel, b"b")
    await ps.publish(channel, b"c")
    await ps.redact(channel, [2])
    async with ps.subscribe(channel, since=(epoch, 1)) as sub:
        got = await receive(sub, 2)
    assert [(m.seq, m.payload) for m in got] == [(2, b""), (3, b"c")]


async def test_a_stored_message_needs_a_payload(ps: PubSub, channel: str) -> None:
    with pytest.raises(ValueError, match="payload"):
        await ps.publish(channel, b"")
    # Ephemeral ones may be empty: they are never read back.
    assert (await ps.publish(channel, b"", store=False)).seq == 0
