"""The store's position of channels that activate together, read in one query."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from ._errors import StoreError
from .backends.base import Store

__all__ = ["PositionReader"]

Position = tuple[str, int]


class PositionReader:
    """``last`` of each channel asked for, the channels asked together read together.

    After a restart every client comes back at once and each channel's first
    subscriber needs its position. A channel asked for while a read runs waits
    for the next read, which takes every channel asked meanwhile: one
    ``last_many`` per batch instead of one round trip per channel, and callers
    asking for the same channel share its row.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._asked: dict[str, list[asyncio.Future[Position]]] = {}
        self._runner: asyncio.Task[None] | None = None

    async def get(self, channel: str) -> Position:
        future: asyncio.Future[Position] = asyncio.get_running_loop().create_future()
        self._asked.setdefault(channel, []).append(future)
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="pubsub-positions")
        return await future

    async def close(self) -> None:
        """Cancel a read in flight (its callers are cancelled) and wait for it to end."""
        runner = self._runner
        if runner is not None:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)

    async def _run(self) -> None:
        try:
            while self._asked:
                batch, self._asked = self._asked, {}
                try:
                    found = await self._read(batch.keys())
                except asyncio.CancelledError:
                    self._asked.update(batch)  # cancelled below
                    raise
                except Exception as exc:
                    for futures in batch.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(exc)
                    continue
                for channel, futures in batch.items():
                    for future in futures:
                        if not future.done():
                            future.set_result(found[channel])
        finally:
            self._runner = None
            for futures in self._asked.values():
                for future in futures:
                    future.cancel()
            self._asked.clear()

    async def _read(self, channels: Collection[str]) -> dict[str, Position]:
        """One ``last_many``, then ``last`` for channels the store has never seen (which
        fixes their epoch)."""
        wanted = list(channels)
        found = await self._store.last_many(wanted)
        missing = [channel for channel in wanted if channel not in found]
        created = await asyncio.gather(
            *(self._store.last(channel) for channel in missing), return_exceptions=True
        )
        for channel, position in zip(missing, created, strict=True):
            if isinstance(position, BaseException):
                raise position
            found[channel] = position
        if len(found) < len(wanted):
            raise StoreError(f"no position for channels {sorted(set(wanted) - found.keys())}")
        return found
