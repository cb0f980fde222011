"""PubSub.replay: a stretch of history in pages of REPLAY_PAGE, bounded, ending where it ends."""

from __future__ import annotations

from streamchat.pubsub import PubSub
from streamchat.pubsub._replay import REPLAY_PAGE


async def _filled(count: int) -> PubSub:
    pubsub = PubSub(broker="memory://", store="memory://")
    await pubsub.connect()
    for n in range(count):
        await pubsub.publish("room", b"%d" % (n + 1))
    return pubsub


async def test_pages_cover_the_stretch_exactly_and_are_never_larger_than_a_page() -> None:
    pubsub = await _filled(2 * REPLAY_PAGE + 30)
    try:
        pages = [page async for page in pubsub.replay("room", after=5, until=2 * REPLAY_PAGE + 10)]
        assert [len(page) for page in pages] == [REPLAY_PAGE, REPLAY_PAGE, 5]
        seqs = [message.seq for page in pages for message in page]
        assert seqs == list(range(6, 2 * REPLAY_PAGE + 11))
    finally:
        await pubsub.disconnect()


async def test_nothing_to_replay() -> None:
    pubsub = await _filled(3)
    try:
        assert [page async for page in pubsub.replay("room", after=3, until=3)] == []
        assert [page async for page in pubsub.replay("empty", after=0, until=10)] == []
    finally:
        await pubsub.disconnect()


async def test_a_pruned_stretch_ends_the_replay_early() -> None:
    pubsub = await _filled(10)
    try:
        await pubsub.prune(keep_last=0, limit=1000)  # nothing kept
        assert [page async for page in pubsub.replay("room", after=0, until=10)] == []
    finally:
        await pubsub.disconnect()
