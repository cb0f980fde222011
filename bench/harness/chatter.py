"""One simulated chat user of the soak: connects, chats, drops, comes back and recovers.

A :class:`Chatter` holds a session token and a few rooms. Each connection
subscribes to its rooms (with ``since`` and ``epoch`` where it has been before),
then reads every event while publishing at random intervals, until its random
lifetime is up: it then closes the connection cleanly or cuts it (no close
frame), stays away a moment, and connects again, to any of the servers. On a
reconnection it sometimes leaves one room for another. A publish whose ack did
not come is sent again, with the same nonce, after the next connection. Every
event goes to its :class:`~harness.ledger.RoomView`, every publish and ack to the
shared :class:`~harness.ledger.Ledger`.

:class:`Phases` ends the run: once ``traffic_over`` is set, chatters publish
nothing new, stop dropping their connections and only retry what is unacked;
once ``finished`` is set they hang up.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter, deque
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from harness.ledger import Ledger, RoomView
from streamchat.client import (
    SESSION_COOKIE,
    ChatClient,
    ChatError,
    EventsDropped,
    Message,
    websocket_url,
)
from streamchat.protocol import ErrorFrame, EventFrame, Join, Leave

__all__ = ["Behaviour", "Chatter", "Phases"]

_FILLER = (
    "the quick brown fox jumps over the lazy dog while chat spams emotes and asks "
    "what game is next and whether the stream will go on past midnight again "
) * 3


@dataclass(frozen=True)
class Behaviour:
    """How every chatter behaves; the times are in seconds."""

    #: Messages per second of one chatter (exponential intervals).
    rate: float
    #: Mean lifetime of a connection before the chatter drops it (exponential).
    mean_connected: float
    #: How long a chatter stays away between connections (uniform).
    offline: tuple[float, float] = (0.1, 2.0)
    #: Share of the drops that cut the TCP connection instead of closing it.
    abort_share: float = 0.5
    #: Chance, at each reconnection, of leaving one room for another.
    switch_share: float = 0.2
    #: Length of a message's text (uniform), nonce included.
    text_chars: tuple[int, int] = (20, 200)
    request_timeout: float = 10.0


@dataclass
class Phases:
    traffic_over: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class Draft:
    """A message to publish until it is acked; its nonce starts its text."""

    room: str
    key: str
    text: str


class Chatter:
    def __init__(
        self,
        index: int,
        token: str,
        urls: list[str],
        rooms: list[str],
        all_rooms: list[str],
        behaviour: Behaviour,
        ledger: Ledger,
        rng: random.Random,
    ) -> None:
        self.index = index
        self._token = token
        self._urls = [websocket_url(url) for url in urls]
        self.rooms = list(rooms)
        self._all_rooms = all_rooms
        self._behaviour = behaviour
        self._ledger = ledger
        self._rng = rng
        self.views: dict[str, RoomView] = {}
        self.pending: deque[Draft] = deque()
        self.stats: Counter[str] = Counter()
        self.online = False
        self.last_error = ""
        self._count = 0
        self._cut = False

    # -- the connection loop -----------------------------------------------------------

    async def run(self, phases: Phases) -> None:
        """Connect again and again until ``phases.finished``."""
        backoff = 0.2
        first = True
        while not phases.finished.is_set():
            if not first and not phases.traffic_over.is_set():
                self._maybe_switch_room()
            url = (
                self._urls[self.index % len(self._urls)] if first else self._rng.choice(self._urls)
            )
            try:
                websocket = await ws_connect(
                    url,
                    additional_headers={"Cookie": f"{SESSION_COOKIE}={self._token}"},
                    open_timeout=10.0,
                    compression=None,
                    max_size=4 << 20,
                )
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                self.stats["connect_failures"] += 1
                self.last_error = f"connect: {exc!r}"
                await _pause(backoff, phases.finished)
                backoff = min(backoff * 2, 5.0)
                continue
            first = False
            backoff = 0.2
            self.stats["connections"] += 1
            await self._session(websocket, phases)
            if not phases.traffic_over.is_set():
                await _pause(self._rng.uniform(*self._behaviour.offline), phases.finished)

    def _maybe_switch_room(self) -> None:
        others = [room for room in self._all_rooms if room not in self.rooms]
        if not others or self._rng.random() >= self._behaviour.switch_share:
            return
        left = self._rng.choice(self.rooms)
        if left in self.views:
            self.views[left].close()
        self.rooms.remove(left)
        self.rooms.append(self._rng.choice(others))
        self.stats["room_switches"] += 1

    async def _session(self, websocket: ClientConnection, phases: Phases) -> None:
        chat = ChatClient(websocket, request_timeout=self._behaviour.request_timeout)
        self._cut = False
        try:
            await self._subscribe_all(chat)
        except (ConnectionClosed, TimeoutError, ChatError) as exc:
            self.stats["subscribe_failures"] += 1
            self.last_error = f"subscribe: {exc!r}"
            websocket.transport.abort()
            await chat.wait_closed()
            await self._consume(chat, websocket)
            return
        self.online = True
        consumer = asyncio.create_task(self._consume(chat, websocket))
        publisher = asyncio.create_task(self._publish(chat, websocket, phases))
        leave = asyncio.create_task(self._until_leave(phases))
        closed = asyncio.create_task(chat.wait_closed())
        how: str | None = None
        try:
            done, _ = await asyncio.wait({leave, closed}, return_when=asyncio.FIRST_COMPLETED)
            how = leave.result() if leave in done else None
        finally:
            for task in (leave, closed, publisher):
                task.cancel()
            await asyncio.wait({leave, closed, publisher})
            if how == "close":
                self.stats["closes"] += 1
                await _close(chat, websocket)
            elif how == "abort" or not chat.closed:
                self.stats["aborts"] += 1
                websocket.transport.abort()
            elif not self._cut:
                self.stats[f"closed_by_server_{chat.close_code}"] += 1
            await chat.wait_closed()
            try:
                async with asyncio.timeout(10.0):
                    await consumer
            except TimeoutError:
                self.stats["consumer_timeouts"] += 1
            self.online = False

    async def _until_leave(self, phases: Phases) -> str:
        """``close`` or ``abort`` after a random lifetime; ``close`` at the very end."""
        lifetime = self._rng.expovariate(1 / self._behaviour.mean_connected)
        try:
            async with asyncio.timeout(lifetime):
                await phases.traffic_over.wait()
        except TimeoutError:
            return "abort" if self._rng.random() < self._behaviour.abort_share else "close"
        await phases.finished.wait()
        return "close"

    # -- subscribing and reading -------------------------------------------------------

    async def _subscribe_all(self, chat: ChatClient) -> None:
        # Events wait in the client's queue meanwhile: the consumer starts once every
        # reply is recorded, so each replayed or live message finds its period.
        for room in self.rooms:
            view = self.views.setdefault(room, RoomView(room))
            current = view.current
            since = current.last if current is not None else None
            reply = await chat.subscribe(
                room, since=since, epoch=view.epoch if since is not None else None
            )
            view.subscribed(
                reply.seq,
                reply.epoch,
                since=since,
                recovered=reply.recovered,
                oldest=reply.oldest,
            )

    async def _consume(self, chat: ChatClient, websocket: ClientConnection) -> None:
        async for event in chat.events():
            if self._cut:
                continue
            if isinstance(event, Message):
                view = self.views.get(event.room)
                if view is None:
                    self.stats["unexpected_messages"] += 1
                elif view.receive(event.seq):
                    self._ledger.delivered(
                        event.room,
                        event.seq,
                        event.message_id,
                        event.text,
                        live=event.seq > view.live_from,
                    )
            elif isinstance(event, EventsDropped):
                # What follows has a hole; the next connection's ``since`` fills it.
                self.stats["events_dropped"] += 1
                self._cut = True
                websocket.transport.abort()
            elif isinstance(event, Join):
                self.stats["joins_seen"] += 1
            elif isinstance(event, Leave):
                self.stats["leaves_seen"] += 1
            elif isinstance(event, EventFrame):
                self.stats[f"room_events_{event.kind}"] += 1
            elif isinstance(event, ErrorFrame):
                self.stats[f"error_frames_{event.code}"] += 1

    # -- publishing --------------------------------------------------------------------

    async def _publish(self, chat: ChatClient, websocket: ClientConnection, phases: Phases) -> None:
        try:
            while True:
                await self._send_pending(chat)
                if phases.traffic_over.is_set():
                    return
                await asyncio.sleep(self._rng.expovariate(self._behaviour.rate))
                if phases.traffic_over.is_set():
                    return
                self.pending.append(self._draft())
        except ConnectionClosed:
            return
        except TimeoutError as exc:
            self.stats["publish_timeouts"] += 1
            self.last_error = f"publish: {exc}"
            self._cut = True
            websocket.transport.abort()

    async def _send_pending(self, chat: ChatClient) -> None:
        while self.pending:
            draft = self.pending[0]
            sent = self._ledger.attempt(draft.key)
            try:
                ack = await chat.publish(draft.room, draft.text, nonce=draft.key)
            except ChatError as exc:
                self.stats[f"publish_errors_{exc.code}"] += 1
                self.last_error = f"publish: {exc}"
                if exc.code == "unavailable":
                    await asyncio.sleep(0.5)
                else:
                    self.pending.popleft()
                continue
            self._ledger.ack(draft.key, ack.room, ack.seq, ack.message_id, sent)
            self.pending.popleft()

    def _draft(self) -> Draft:
        self._count += 1
        self._ledger.created += 1
        key = f"c{self.index}-{self._count}"
        length = self._rng.randint(*self._behaviour.text_chars)
        start = self._rng.randrange(len(_FILLER) // 2)
        text = f"{key} {_FILLER[start : start + max(1, length - len(key) - 1)].strip() or 'hi'}"
        return Draft(self._rng.choice(self.rooms), key, text)

    # -- the end -----------------------------------------------------------------------

    def caught_up(self, heads: dict[str, int]) -> bool:
        """True once every room it is in has reached ``heads[room]``."""
        for room in self.rooms:
            view = self.views.get(room)
            current = view.current if view is not None else None
            if current is None or current.last < heads.get(room, 0):
                return False
        return True


async def _close(chat: ChatClient, websocket: ClientConnection) -> None:
    try:
        async with asyncio.timeout(5.0):
            await chat.close()
    except TimeoutError:
        websocket.transport.abort()


async def _pause(seconds: float, finished: asyncio.Event) -> None:
    """Sleep ``seconds``, or less if the run finishes meanwhile."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await finished.wait()
