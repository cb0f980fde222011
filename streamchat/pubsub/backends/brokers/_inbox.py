"""The bounded queue between a broker's receive callback and ``next_published``."""

from __future__ import annotations

import asyncio
from collections import deque

from ..._errors import BrokerError

__all__ = ["Inbox"]


class Inbox:
    """Received envelopes, at most ``maxsize``; overflow or ``fail`` breaks the link.

    An overflow means envelopes were lost, so it is reported like a lost link: the PubSub
    reconnects and recovers from the store rather than deliver with a silent hole.
    """

    def __init__(self, maxsize: int = 65536) -> None:
        self._maxsize = maxsize
        self._items: deque[bytes] = deque()
        self._error: BrokerError | None = None
        self._waiter: asyncio.Future[None] | None = None

    def put(self, data: bytes) -> None:
        if self._error is not None:
            return
        if len(self._items) >= self._maxsize:
            self.fail(BrokerError(f"receive buffer overflowed ({self._maxsize} envelopes)"))
            return
        self._items.append(data)
        self._wake()

    def fail(self, error: BrokerError) -> None:
        if self._error is None:
            self._error = error
            self._items.clear()
        self._wake()

    def reset(self) -> None:
        self._items.clear()
        self._error = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self, idle: float | None = None) -> bytes | None:
        """The next envelope; None after ``idle`` seconds without one; raises the failure."""
        while True:
            if self._error is not None:
                raise self._error
            if self._items:
                return self._items.popleft()
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                if idle is None:
                    await self._waiter
                else:
                    try:
                        async with asyncio.timeout(idle):
                            await self._waiter
                    except TimeoutError:
                        return None
            finally:
                self._waiter = None
