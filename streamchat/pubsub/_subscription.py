"""One consumer's view of a channel: a bounded queue of messages in seq order."""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from ._errors import Lagged
from ._message import Message
from ._replay import REPLAY_PAGE, Read

__all__ = ["Subscription"]

log = logging.getLogger("streamchat.pubsub")


class Subscription:
    """Iterate it (``async for message in sub``) to receive the channel's messages in seq order.

    A subscription opened with ``since`` first replays what the store holds after that
    position, page by page as it is consumed, then continues with live messages: no gap,
    no duplicate. Live messages wait in a queue of at most ``maxsize`` messages; when it is
    full the subscription is closed and iteration raises ``Lagged``.
    """

    __slots__ = (
        "_buffer",
        "_catch_up_after",
        "_catch_up_until",
        "_closed",
        "_epoch",
        "_fetch",
        "_lagged",
        "_last_seq",
        "_maxsize",
        "_replay",
        "_waiter",
        "channel",
        "recovered",
    )

    def __init__(
        self,
        channel: str,
        *,
        maxsize: int,
        epoch: str,
        last_seq: int,
        recovered: bool,
        replay: list[Message],
        catch_up_until: int,
        fetch: Read,
    ) -> None:
        self.channel = channel
        #: True when ``since`` was honoured fully: same epoch and the history reached back.
        self.recovered = recovered
        self._maxsize = maxsize
        self._epoch = epoch
        self._last_seq = last_seq
        self._replay: deque[Message] = deque(replay)
        self._catch_up_after = replay[-1].seq if replay else last_seq
        self._catch_up_until = catch_up_until
        self._fetch = fetch
        self._buffer: deque[Message] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._lagged = False

    @property
    def position(self) -> tuple[str, int]:
        """``(epoch, seq)`` of the last stored message handed out: the ``since`` to resume from."""
        return (self._epoch, self._last_seq)

    @property
    def closed(self) -> bool:
        return self._closed

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        while True:
            if self._lagged:
                raise Lagged(self.channel, self._epoch, self._last_seq)
            if self._replay:
                message = self._replay.popleft()
            elif self._catch_up_after < self._catch_up_until:
                await self._fetch_replay()
                continue
            elif self._buffer:
                message = self._buffer.popleft()
            elif self._closed:
                raise StopAsyncIteration
            else:
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
                continue
            if message.seq:
                # Live messages that the replay already handed out are dropped here.
                if message.epoch == self._epoch and message.seq <= self._last_seq:
                    continue
                self._epoch = message.epoch
                self._last_seq = message.seq
            return message

    async def _fetch_replay(self) -> None:
        after, until = self._catch_up_after, self._catch_up_until
        page = await self._fetch(after, min(REPLAY_PAGE, until - after))
        fresh = [m for m in page if m.epoch == self._epoch and after < m.seq <= until]
        if not fresh:
            # The history was trimmed or lost while we replayed it; live messages go on.
            log.warning(
                "channel %r: seq %d..%d vanished from the store during replay",
                self.channel,
                after + 1,
                until,
            )
            self._catch_up_after = until
            return
        self._replay.extend(fresh)
        self._catch_up_after = fresh[-1].seq

    # -- called by the PubSub, never by the consumer --

    def _push(self, message: Message) -> bool:
        """Queue a live message; False when the subscriber lagged (and is now closed)."""
        if self._closed:
            return False
        if len(self._buffer) >= self._maxsize:
            self._lagged = True
            self._closed = True
            # Drop what is queued now rather than when the consumer looks: memory stays bounded.
            self._buffer.clear()
            self._replay.clear()
            self._wake()
            return False
        self._buffer.append(message)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    def _close(self) -> None:
        """End iteration once what is queued has been consumed."""
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __repr__(self) -> str:
        state = "lagged" if self._lagged else "closed" if self._closed else "open"
        return f"<Subscription {self.channel!r} {state} at {self.position}>"
