"""The per-process fan-out: one pub/sub subscription per room, many local members.

A :class:`RoomFeed` holds this process's single subscription to a room's
channel. Each message becomes its wire frame once; frames that arrive close
together are gathered into one :class:`Batch`, and every member of the room
(a WebSocket connection) is handed that same batch, so the work per member is
one hand-over, whatever the number of messages. The :class:`FlushScheduler`
hands batches out at the next turn of the event loop, and not more often than
once per ``interval``: under load each member gets one write per interval
instead of one per message.

A member still replaying history after ``subscribe since`` gets live frames
parked in its own bounded buffer until the replay has caught up, so it sees
no gap and no duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from streamchat.backoff import Backoff
from streamchat.protocol import message_frame
from streamchat.pubsub import Lagged, Message, PubSub

__all__ = ["Batch", "FlushScheduler", "Member", "RoomFeed", "RoomFeeds", "channel_of"]

log = logging.getLogger("streamchat.rooms")

#: Waits before a room feed that failed subscribes again.
_RESUBSCRIBE = Backoff(first=0.2, cap=10.0)

#: Live frames parked for one member while it replays history.
MAX_PARKED = 10_000


def channel_of(room: str) -> str:
    return f"room:{room}"


class Batch:
    """Frames of one room handed to all its members at once.

    ``framed`` is left to the transport: the first member that needs the batch
    as a WebSocket frame builds it there, the others reuse it.
    """

    __slots__ = ("_payload", "framed", "frames", "size")

    def __init__(self, frames: list[bytes]) -> None:
        self.frames = frames
        self.size = sum(map(len, frames))
        self._payload: bytes | None = None
        self.framed: bytes | None = None

    @property
    def payload(self) -> bytes:
        """The frames as one ``\\n``-separated text."""
        if self._payload is None:
            self._payload = b"\n".join(self.frames)
        return self._payload


class Member(Protocol):
    """What a feed needs of a subscriber: non-blocking ways to hand it frames."""

    def deliver(self, frame: bytes) -> None:
        """Queue one frame for this member only; never blocks, never raises."""

    def deliver_batch(self, batch: Batch) -> None:
        """Queue a batch shared by the room's members; never blocks, never raises."""

    def overflow(self) -> None:
        """The member could not keep up; it must go (and resubscribe with ``since``)."""

    async def drained(self) -> None:
        """Return once the member has written out most of what it was handed."""


class FlushScheduler:
    """Hands out the feeds' batches soon, but not more often than the work allows.

    A flush runs at the next turn of the event loop, at least ``interval``
    seconds after the previous one, and at least as long after it as that one
    took. Under light load messages go out at once; under heavy load batches
    grow instead of writes multiplying, and flushing never takes more than
    about half of the process's time.
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        #: Frames handed to members in shared batches so far (for the metrics).
        self.delivered = 0
        self._dirty: dict[RoomFeed, None] = {}
        self._handle: asyncio.Handle | None = None
        self._next = 0.0

    def request(self, feed: RoomFeed) -> None:
        self._dirty[feed] = None
        if self._handle is None:
            loop = asyncio.get_running_loop()
            delay = self._next - loop.time()
            if delay > 0:
                self._handle = loop.call_later(delay, self._run)
            else:
                self._handle = loop.call_soon(self._run)

    def _run(self) -> None:
        self._handle = None
        clock = asyncio.get_running_loop().time
        started = clock()
        dirty, self._dirty = self._dirty, {}
        for feed in dirty:
            try:
                feed.flush()
            except Exception:
                log.exception("room %s: flushing a batch failed", feed.room)
        finished = clock()
        self._next = finished + max(self.interval, finished - started)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._dirty.clear()


class _Parked:
    """Live frames held back for a member that is replaying history."""

    __slots__ = ("frames",)

    def __init__(self) -> None:
        self.frames: list[tuple[int, bytes]] = []


class RoomFeed:
    """This process's subscription to one room, fanned out to its local members."""

    def __init__(self, pubsub: PubSub, room: str, scheduler: FlushScheduler) -> None:
        self.room = room
        self.channel = channel_of(room)
        self._pubsub = pubsub
        self._scheduler = scheduler
        self._live: dict[Member, None] = {}
        self._parked: dict[Member, _Parked] = {}
        # Caught up, but the batch being gathered was not meant for them: they get
        # frames one by one until it is handed out, then share batches.
        self._joining: dict[Member, None] = {}
        self._pending: list[bytes] = []
        self._ready = asyncio.Event()
        self._epoch = ""
        self._last_seq = 0
        self._task = asyncio.create_task(self._run(), name=f"room-feed:{room}")

    def __len__(self) -> int:
        return len(self._live) + len(self._parked) + len(self._joining)

    @property
    def position(self) -> tuple[str, int]:
        """``(epoch, seq)`` of the last message handed to the members (or found at start)."""
        return self._epoch, self._last_seq

    async def ready(self) -> None:
        """Wait until the broker subscription is live."""
        await self._ready.wait()

    def add(self, member: Member, *, parked: bool) -> None:
        if parked:
            self._parked[member] = _Parked()
        else:
            self._live[member] = None

    def discard(self, member: Member) -> None:
        self._live.pop(member, None)
        self._parked.pop(member, None)
        self._joining.pop(member, None)

    def go_live(self, member: Member, after_seq: int) -> None:
        """End ``member``'s replay at ``after_seq``: send what was parked beyond it."""
        parked = self._parked.pop(member, None)
        if parked is None:
            return
        for seq, frame in parked.frames:
            if seq == 0 or seq > after_seq:
                member.deliver(frame)
        if self._pending:
            # Its frames of the batch being gathered were parked and sent above.
            self._joining[member] = None
        else:
            self._live[member] = None

    def flush(self) -> None:
        """Hand the frames gathered since the last flush to every live member."""
        if self._pending:
            batch = Batch(self._pending)
            self._pending = []
            live = self._live
            for member in live:
                member.deliver_batch(batch)
            self._scheduler.delivered += len(batch.frames) * len(live)
        if self._joining:
            self._live.update(self._joining)
            self._joining.clear()

    def _dispatch(self, message: Message) -> None:
        if message.stored:
            if message.epoch == self._epoch and message.seq <= self._last_seq:
                return  # already delivered: a replay overlapping the live stream
            self._epoch, self._last_seq = message.epoch, message.seq
            frame = message_frame(self.room, message.seq, message.payload)
        else:
            frame = message.payload  # ephemeral payloads are complete frames
        self._hand_out(message.seq, frame)

    def inject(self, frame: bytes) -> None:
        """Hand an ephemeral frame (not from this room's channel) to the members."""
        self._hand_out(0, frame)

    def _hand_out(self, seq: int, frame: bytes) -> None:
        if self._live:
            self._pending.append(frame)
            self._scheduler.request(self)
        elif self._joining:
            self._scheduler.request(self)  # to make them live
        for member in self._joining:
            member.deliver(frame)
        for member, parked in self._parked.items():
            if len(parked.frames) < MAX_PARKED:
                parked.frames.append((seq, frame))
            else:
                member.overflow()

    async def _run(self) -> None:
        since: tuple[str, int] | None = None
        failures = 0
        while True:
            try:
                async with self._pubsub.subscribe(self.channel, since=since) as sub:
                    if since is None:
                        self._epoch, self._last_seq = sub.position
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
                await _RESUBSCRIBE.wait(failures)
            # Resume exactly after the last frame we handed out.
            since = (self._epoch, self._last_seq) if self._epoch else None

    @property
    def is_ready(self) -> bool:
        return self._ready.is_set()

    def cancel(self) -> asyncio.Task[None]:
        """Stop the feed without waiting; the task returned ends when its subscription has."""
        self._task.cancel()
        return self._task

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class RoomFeeds:
    """The feeds of this process, created on first member and closed a while after the last.

    A feed stays open ``linger`` seconds after its last member leaves: viewers
    reconnect and hop between rooms, and reopening a room costs a broker
    subscription and a store read that an idle feed does not.
    """

    def __init__(
        self,
        pubsub: PubSub,
        *,
        flush_interval: float = 0.005,
        ready_timeout: float = 10.0,
        linger: float = 30.0,
    ) -> None:
        self._pubsub = pubsub
        self._feeds: dict[str, RoomFeed] = {}
        self._scheduler = FlushScheduler(flush_interval)
        self._ready_timeout = ready_timeout
        self._linger = linger
        self._idle: dict[str, asyncio.TimerHandle] = {}
        self._stopping: set[asyncio.Task[None]] = set()

    def get(self, room: str) -> RoomFeed | None:
        return self._feeds.get(room)

    def rooms(self) -> list[str]:
        """The rooms this process has a feed of."""
        return list(self._feeds)

    @property
    def members(self) -> int:
        """Subscriptions of this process's members, every room together."""
        return sum(len(feed) for feed in self._feeds.values())

    @property
    def delivered(self) -> int:
        """Frames handed to members in shared batches so far."""
        return self._scheduler.delivered

    async def add(self, room: str, member: Member, *, parked: bool) -> RoomFeed:
        """Make ``member`` a member of ``room``'s feed, starting the feed if needed."""
        feed = self._feeds.get(room)
        if feed is None:
            feed = self._feeds[room] = RoomFeed(self._pubsub, room, self._scheduler)
        elif (idle := self._idle.pop(room, None)) is not None:
            idle.cancel()
        feed.add(member, parked=parked)
        if feed.is_ready:
            return feed
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
        if len(feed) or room in self._idle:
            return
        if self._linger > 0 and feed.is_ready:
            loop = asyncio.get_running_loop()
            self._idle[room] = loop.call_later(self._linger, self._expire, room, feed)
        else:
            del self._feeds[room]
            await feed.close()

    def _expire(self, room: str, feed: RoomFeed) -> None:
        self._idle.pop(room, None)
        if self._feeds.get(room) is feed and not len(feed):
            del self._feeds[room]
            self._stopping.add(task := feed.cancel())
            task.add_done_callback(self._stopping.discard)

    async def close(self) -> None:
        self._scheduler.cancel()
        for idle in self._idle.values():
            idle.cancel()
        self._idle.clear()
        feeds, self._feeds = list(self._feeds.values()), {}
        for feed in feeds:
            await feed.close()
        if self._stopping:
            await asyncio.wait(self._stopping)
