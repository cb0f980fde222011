"""Coalescing lookups: many callers asking at once share one query.

Used by the stores and rooms for the look-ups every handshake makes (sessions, room
names); it imports nothing of streamchat.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Generic, TypeVar

__all__ = ["BatchedLookup"]

K = TypeVar("K")
V = TypeVar("V")


class BatchedLookup(Generic[K, V]):
    """Look keys up in batches: one query for every key asked since the last one began.

    A caller alone waits for a query of its one key. Under load, the keys asked
    while a query runs wait for the next, which takes them all (up to
    ``max_batch``): the database sees a few ``IN`` queries instead of one round
    trip per caller, and the event loop one wake-up per batch. ``fetch`` gets
    the distinct keys and returns what it found; a key it leaves out is ``None``.
    """

    def __init__(
        self, fetch: Callable[[Collection[K]], Awaitable[Mapping[K, V]]], *, max_batch: int = 500
    ) -> None:
        self._fetch = fetch
        self._max_batch = max_batch
        self._waiting: list[tuple[K, asyncio.Future[V | None]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def get(self, key: K) -> V | None:
        """The value of ``key``, or ``None`` if the store has none."""
        future: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        self._waiting.append((key, future))
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="batched-lookup")
        return await future

    async def close(self) -> None:
        """Cancel a fetch in flight (its callers are cancelled) and wait for it to end.

        Call before closing what ``fetch`` uses: a fetch started for callers that
        have since gone must not outlive its database.
        """
        runner = self._runner
        if runner is not None:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)

    async def _run(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                batch = [(key, future) for key, future in batch if not future.done()]
                if not batch:
                    continue
                try:
                    found = await self._fetch({key for key, _ in batch})
                except asyncio.CancelledError:
                    for _, future in batch:
                        future.cancel()
                    raise
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for key, future in batch:
                    if not future.done():
                        future.set_result(found.get(key))
        finally:
            self._runner = None
            for _, future in self._waiting:
                if not future.done():
                    future.cancel()
            self._waiting.clear()
