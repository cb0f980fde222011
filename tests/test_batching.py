"""BatchedLookup: callers asking together share one fetch, and each gets its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

import pytest

from streamchat.batching import BatchedLookup
from tests.helpers import wait_for


class Recorder:
    def __init__(self, *, fail: Exception | None = None) -> None:
        self.calls: list[set[str]] = []
        self.fail = fail
        self.release = asyncio.Event()
        self.release.set()

    async def fetch(self, keys: Collection[str]) -> dict[str, str]:
        self.calls.append(set(keys))
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return {key: key.upper() for key in keys if not key.startswith("missing")}


async def test_callers_in_one_tick_share_one_fetch() -> None:
    recorder = Recorder()
    lookup = BatchedLookup(recorder.fetch)
    results = await asyncio.gather(*(lookup.get(key) for key in ("a", "b", "missing", "a")))
    assert results == ["A", "B", None, "A"]
    assert recorder.calls == [{"a", "b", "missing"}]


async def test_callers_arriving_during_a_fetch_share_the_next() -> None:
    recorder = Recorder()
    recorder.release.clear()
    lookup = BatchedLookup(recorder.fetch)
    first = asyncio.create_task(lookup.get("a"))
    await asyncio.sleep(0)  # the first fetch starts and waits
    later = [asyncio.create_task(lookup.get(key)) for key in ("b", "c", "d")]
    await asyncio.sleep(0)
    recorder.release.set()
    assert await first == "A"
    assert [await task for task in later] == ["B", "C", "D"]
    assert recorder.calls == [{"a"}, {"b", "c", "d"}]


async def test_batches_are_capped() -> None:
    recorder = Recorder()
    lookup = BatchedLookup(recorder.fetch, max_batch=3)
    keys = [f"k{i}" for i in range(7)]
    assert await asyncio.gather(*(lookup.get(k) for k in keys)) == [k.upper() for k in keys]
    assert [len(call) for call in recorder.calls] == [3, 3, 1]


async def test_a_failed_fetch_fails_its_callers_only() -> None:
    recorder = Recorder(fail=RuntimeError("database down"))
    lookup = BatchedLookup(recorder.fetch)
    results = await asyncio.gather(lookup.get("a"), lookup.get("b"), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    recorder.fail = None
    assert await lookup.get("a") == "A"  # the next caller starts afresh


async def test_a_cancelled_caller_does_not_disturb_the_others() -> None:
    recorder = Recorder()
    recorder.release.clear()
    lookup = BatchedLookup(recorder.fetch)
    gone = asyncio.create_task(lookup.get("a"))
    stays = asyncio.create_task(lookup.get("b"))
    await asyncio.sleep(0)
    gone.cancel()
    recorder.release.set()
    assert await stays == "B"
    with pytest.raises(asyncio.CancelledError):
        await gone


async def test_close_cancels_a_fetch_in_flight() -> None:
    recorder = Recorder()
    recorder.release.clear()  # the fetch never ends on its own
    lookup = BatchedLookup(recorder.fetch)
    caller = asyncio.create_task(lookup.get("a"))
    await wait_for(lambda: recorder.calls)  # the fetch has started, and waits
    assert recorder.calls == [{"a"}]
    await lookup.close()
    with pytest.raises(asyncio.CancelledError):
        await caller
    # Usable again afterwards.
    recorder.release.set()
    assert await lookup.get("b") == "B"
