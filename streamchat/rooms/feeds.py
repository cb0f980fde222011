"""The per-process fan-out: one pub/sub subscription per room, many local members.

A :class:`RoomFeed` holds this process's single subscription to a room's
channel. Each message is turned into its wire frame once, then handed to every
member (a WebSocket connection) as the same bytes. A member that is still
replaying history after ``subscribe since`` gets live frames parked in its own
bounded buffer until the replay has caught up, so it sees no gap and no
duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Protocol

from streamchat.protocol import message_frame
from streamchat.pubsub import Lagged, Message, PubSub

__all__ = ["Member", "RoomFeed", "RoomFeeds", "channel_of"]

log = logging.getLogger("streamchat.rooms")

#: Live frames parked for one member while it replays history.
MAX_PARKED = 10_000


def channel_of(room: str) -> str:
    return f"room:{room}"


class Member(Protocol):
    """What a feed needs of a subscriber: a non-blocking way to hand it frames."""

    def deliver(self, frame: bytes) -> None:
        """Queue ``frame`` for sending; never blocks, never raises."""

    def overflow(self) -> None:
        """The member could not keep up; it must go (and resubscribe with ``since``)."""

    async def drained(self) -> None:
        """Return once the member has written out most of what it was handed."""


class _Parked:
    """Live frames held back for a member that is replaying history."""

    __slots__ = ("frames",)

    def __init__(self) -> None:
        self.frames: list[tuple[int, bytes]] = []


class RoomFeed:
    """This process's subscription to one room, fanned out to its local members."""

    def __init__(self, pubsub: PubSub, room: str) -> None:
        self.room = room
        self.channel = channel_of(room)
        self._pubsub = pubsub
        self._members: dict[Member, _Parked | None] = {}
        self._ready = asyncio.Event()
        self._epoch = ""
        self._last_seq = 0
        self._task = asyncio.create_task(self._run(), name=f"room-feed:{room}")

    def __len__(self) -> int:
        return len(self._members)

    @property
    def members(self) -> list[Member]:
        return list(self._members)

    async def ready(self) -> None:
        """Wait until the broker subscription is live."""
        await self._ready.wait()

    def add(self, member: Member, *, parked: bool) -> None:
        self._members[member] = _Parked() if parked else None

    def discard(self, member: Member) -> None:
        self._members.pop(member, None)

    def go_live(self, member: Member, after_seq: int) -> None:
        """End ``member``'s replay at ``after_seq``: send what was parked beyond it."""
        parked = self._members.get(member)
        if parked is None:
            return
        for seq, frame in parked.frames:
            if seq == 0 or seq > after_seq:
                member.deliver(frame)
        self._members[member] = None

    def _dispatch(self, message: Message) -> None:
        if message.stored:
            if message.epoch == self._epoch and message.seq <= self._last_seq:
                return  # already delivered: a replay overlapping the live stream
            self._epoch, self._last_seq = message.epoch, message.seq
            frame = message_frame(self.room, message.seq, message.payload)
        else:
            frame = message.payload  # ephemeral payloads are complete frames
        for member, parked in self._members.items():
            if parked is None:
                member.deliver(frame)
            elif len(parked.frames) < MAX_PARKED:
                parked.frames.append((message.seq, frame))
            else:
                member.overflow()

    async def _run(self) -> None:
        since: tuple[str, int] | None = None
        failures = 0
        while True:
            try:
                async with self._pubsub.subscribe(self.channel, since=since) as sub:
                    self._ready.set()
                    failures = 0
                    async for message in sub:
                        self._dispatch(message)
                return
            except asyncio.CancelledError:
                raise
            except Lagged:
                log.warning(
                    "room %s: feed fell behind; resuming from seq %d", self.room, self._last_seq
                )
            except Exception:
                failures += 1
                log.exception("room %s: feed failed (attempt %d)", self.room, failures)
                await asyncio.sleep(min(10.0, 0.1 * 2**failures) * random.uniform(0.5, 1.0))
            # Resume exactly after the last frame we handed out.
            since = (self._epoch, self._last_seq) if self._epoch else None

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class RoomFeeds:
    """The feeds of this process, created on first member and closed after the last."""

    def __init__(self, pubsub: PubSub, *, ready_timeout: float = 10.0) -> None:
        self._pubsub = pubsub
        self._feeds: dict[str, RoomFeed] = {}
        self._ready_timeout = ready_timeout

    def get(self, room: str) -> RoomFeed | None:
        return self._feeds.get(room)

    async def add(self, room: str, member: Member, *, parked: bool) -> RoomFeed:
        """Make ``member`` a member of ``room``'s feed, starting the feed if needed."""
        feed = self._feeds.get(room)
        if feed is None:
            feed = self._feeds[room] = RoomFeed(self._pubsub, room)
        feed.add(member, parked=parked)
        try:
            async with asyncio.timeout(self._ready_timeout):
                await feed.ready()
        except BaseException:
            await self.discard(room, member)
            raise
        return feed

    async def discard(self, room: str, member: Member) -> None:
        feed = self._feeds.get(room)
        if feed is None:
            return
        feed.discard(member)
        if not len(feed):
            del self._feeds[room]
            await feed.close()

    async def close(self) -> None:
        feeds, self._feeds = list(self._feeds.values()), {}
        for feed in feeds:
            await feed.close()
