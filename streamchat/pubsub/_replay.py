"""Reading a stretch of a channel's history back from the store, a page at a time."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable

from ._message import Message

__all__ = ["REPLAY_PAGE", "Read", "pages"]

#: Messages per read of every replay: a subscriber's catch-up, a process filling a
#: gap, an application replaying to its clients. A page of the longest chat
#: messages still fits well within one client's outbox.
REPLAY_PAGE = 100

# Read(after, limit) -> the channel's stored messages with seq > after, oldest first.
Read = Callable[[int, int], Awaitable[list[Message]]]


async def pages(read: Read, *, after: int, until: int) -> AsyncGenerator[list[Message]]:
    """The stored messages with ``after < seq <= until``, oldest first, in pages of at
    most :data:`REPLAY_PAGE`. Ends early when the store has nothing more to give (its
    history was pruned meanwhile); epochs are the caller's to check."""
    while after < until:
        page = await read(after, min(REPLAY_PAGE, until - after))
        page = [message for message in page if message.seq <= until]
        if not page:
            return
        yield page
        after = page[-1].seq
