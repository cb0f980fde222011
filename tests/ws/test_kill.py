"""kill -9 of a server while clients publish as fast as they can.

Whatever was acknowledged is in history afterwards, once, with its text; readers get
every message exactly once and in order, live or by subscribing again with ``since``;
and a message whose ack was lost is stored once however often it is sent again with
its nonce.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import msgspec
import pytest
from websockets.exceptions import ConnectionClosed

from streamchat.client import ChatClient, EventsDropped, Message, login
from streamchat.protocol import ErrorFrame, Subscribed
from tests.ws._process import ServerProcess, ServerSet
from tests.ws.test_cluster import cluster_database

__all__ = ["cluster_database"]

pytestmark = pytest.mark.timeout(90)

ROOM = "sablesignal"
#: Publishing users, each on a connection of its own.
PUBLISHERS = ("2001", "2002", "2003", "2004")
#: Publishes each publisher keeps in flight at once.
LANES = 8
#: Acks to collect before the kill.
KILL_AFTER = 400
#: Seconds any one step may take: a hang fails the test instead of stalling the suite.
STEP = 15.0

SETTINGS = {
    "STREAMCHAT_RATE_LIMIT": "false",
    "STREAMCHAT_RUN_SINGLETONS": "false",
    "STREAMCHAT_LOG_LEVEL": "warning",
}


@dataclass(frozen=True, order=True)
class Attempt:
    """One message a publisher sent, under a nonce of its own."""

    user: str
    nonce: str
    text: str


@dataclass
class Traffic:
    """What the publishers sent and what the server acknowledged (attempt -> seq)."""

    acked: dict[Attempt, int] = field(default_factory=dict)
    in_flight: set[Attempt] = field(default_factory=set)
    enough: asyncio.Event = field(default_factory=asyncio.Event)

    def acked_by(self, user: str) -> list[Attempt]:
        return sorted(attempt for attempt in self.acked if attempt.user == user)

    def unacked_by(self, user: str) -> list[Attempt]:
        return sorted(attempt for attempt in self.in_flight if attempt.user == user)


class Reader:
    """An anonymous subscriber of the room that keeps every chat message it receives.

    It may subscribe again, on a new connection, ``since`` the last message it saw.
    """

    def __init__(self) -> None:
        self.seen: list[Message] = []
        self.epoch: str | None = None
        self.chat: ChatClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()

    async def subscribe(self, url: str, *, resume: bool = False) -> Subscribed:
        """Connect to ``url`` and subscribe, with ``since`` the last seq seen if ``resume``."""
        await self.ended()
        self.chat = await ChatClient.open(url, request_timeout=STEP)
        since = (self.seen[-1].seq if self.seen else 0) if resume else None
        subscribed = await self.chat.subscribe(ROOM, since=since, epoch=self.epoch)
        self.epoch = subscribed.epoch
        self._task = asyncio.create_task(self._collect(self.chat))
        return subscribed

    async def _collect(self, chat: ChatClient) -> None:
        async for event in chat.events():
            assert not isinstance(event, EventsDropped | ErrorFrame), event
            if isinstance(event, Message):
                self.seen.append(event)
                self._arrived.set()

    async def seen_up_to(self, seq: int) -> None:
        async with asyncio.timeout(STEP):
            while not self.seen or self.seen[-1].seq < seq:
                self._arrived.clear()
                await self._arrived.wait()

    async def ended(self) -> None:
        """Wait until the connection has ended (a failure while reading is raised here)."""
        if self._task is not None:
            async with asyncio.timeout(STEP):
                await self._task

    async def close(self) -> None:
        if self.chat is not None:
            await self.chat.close()
        await self.ended()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[ServerSet]:
    with ServerSet(tmp_path) as servers:
        yield servers


async def publish_flat_out(chat: ChatClient, user: str, traffic: Traffic) -> None:
    """Publish from ``LANES`` tasks on one connection, without pause, until it is cut."""
    numbers = itertools.count()

    async def lane() -> None:
        for number in numbers:
            attempt = Attempt(user, f"{user}-{number}", f"message {number} from {user}")
            traffic.in_flight.add(attempt)
            try:
                ack = await chat.publish(ROOM, attempt.text, nonce=attempt.nonce)
            except ConnectionClosed:
                return
            traffic.in_flight.discard(attempt)
            traffic.acked[attempt] = ack.seq
            if len(traffic.acked) >= KILL_AFTER:
                traffic.enough.set()

    async with asyncio.TaskGroup() as lanes:
        for _ in range(LANES):
            lanes.create_task(lane())


async def publish_until_killed(
    server: ServerProcess, sessions: dict[str, str], traffic: Traffic, *, before_kill: Reader
) -> None:
    """Publish flat out; after ``KILL_AFTER`` acks, kill -9 the server mid-publish.

    ``before_kill`` closes its connection halfway, so that it has something to recover.
    """
    chats = [
        await ChatClient.open(server.url, sessions[user], request_timeout=STEP)
        for user in PUBLISHERS
    ]
    try:
        async with asyncio.TaskGroup() as publishers:
            for chat, user in zip(chats, PUBLISHERS, strict=True):
                publishers.create_task(publish_flat_out(chat, user, traffic))
            await before_kill.seen_up_to(KILL_AFTER // 2)
            await before_kill.close()
            async with asyncio.timeout(STEP):
                await traffic.enough.wait()
            in_flight = len(traffic.in_flight)
            server.kill()
            assert in_flight > 0, "nothing was in flight: not killed mid-publish"
    finally:
        for chat in chats:
            await chat.close()


async def stored(url: str) -> list[Message]:
    """The room's whole history, read over HTTP, oldest first."""
    messages: list[Message] = []
    async with httpx.AsyncClient(base_url=url, timeout=STEP) as http:
        while True:
            after = messages[-1].seq if messages else 0
            response = await http.get(
                f"/api/rooms/{ROOM}/messages", params={"after": after, "limit": 100}
            )
            assert response.status_code == 200, response.text
            page = msgspec.convert(response.json()["messages"], list[Message])
            if not page:
                return messages
            messages.extend(page)


def check_history(history: list[Message], traffic: Traffic) -> dict[str, Message]:
    """Every acked message is stored once, under its seq, with its text; seqs have no gap."""
    assert [m.seq for m in history] == list(range(1, len(history) + 1))
    by_text = {m.text: m for m in history}
    assert len(by_text) == len(history), "a message was stored twice"
    sent = {attempt.text for attempt in itertools.chain(traffic.acked, traffic.in_flight)}
    assert set(by_text) <= sent, "history holds a message nobody sent"
    for attempt, seq in traffic.acked.items():
        message = by_text.get(attempt.text)
        assert message is not None, f"acked as seq {seq}, then lost: {attempt}"
        assert (message.seq, message.user.id) == (seq, attempt.user), attempt
    return by_text


async def publish_again(url: str, sessions: dict[str, str], traffic: Traffic) -> None:
    """Send every unacked message again with its nonce, and a few acked ones; check the acks."""
    history = await stored(url)
    before = check_history(history, traffic)
    fresh: list[int] = []
    for user, session in sessions.items():
        async with ChatClient.connect(url, session, request_timeout=STEP) as chat:
            for attempt in traffic.unacked_by(user):
                ack = await chat.publish(ROOM, attempt.text, nonce=attempt.nonce)
                original = before.get(attempt.text)
                if original is None:
                    fresh.append(ack.seq)
                else:
                    # Stored before the kill, its ack lost: the original is acked again.
                    assert (ack.seq, ack.message_id) == (original.seq, original.message_id)
                traffic.in_flight.discard(attempt)
                traffic.acked[attempt] = ack.seq
            for attempt in traffic.acked_by(user)[:3]:
                ack = await chat.publish(ROOM, attempt.text, nonce=attempt.nonce)
                assert ack.seq == traffic.acked[attempt], f"{attempt} stored again"
    # Only the messages that never made it are new, numbered after what was there.
    assert sorted(fresh) == list(range(len(history) + 1, len(history) + 1 + len(fresh)))
    assert not traffic.in_flight


async def readers_whole(url: str, traffic: Traffic, readers: list[Reader]) -> list[Message]:
    """History passes :func:`check_history`, and each reader saw exactly all of it."""
    history = await stored(url)
    check_history(history, traffic)
    for reader in readers:
        await reader.seen_up_to(len(history))
        assert reader.seen == history
    return history


def assert_no_traceback(server: ServerProcess) -> None:
    assert "Traceback" not in server.log(), f"{server.name}:\n{server.log()}"


async def test_embedded_server_killed_mid_publish_loses_no_acked_message(
    servers: ServerSet, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    server = servers.add(
        "embedded",
        SETTINGS
        | {
            "STREAMCHAT_DATABASE_URL": f"sqlite+aiosqlite:///{data / 'streamchat.db'}",
            "STREAMCHAT_BROKER_URL": "memory://",
        },
    )
    await server.start()
    sessions = {user: await login(server.url, user, f"publisher{user}") for user in PUBLISHERS}
    traffic = Traffic()
    readers = [Reader() for _ in range(3)]
    try:
        for reader in readers:
            assert (await reader.subscribe(server.url)).seq == 0
        await publish_until_killed(server, sessions, traffic, before_kill=readers[0])
        for reader in readers:
            await reader.ended()

        # Restarted on the same data, it has every acked message, and the readers
        # coming back with the last seq they saw get the rest, recovered.
        await server.start()
        history = await stored(server.url)
        check_history(history, traffic)
        for reader in readers:
            epoch = reader.epoch
            again = await reader.subscribe(server.url, resume=True)
            assert (again.recovered, again.epoch, again.seq) == (True, epoch, len(history))
        await readers_whole(server.url, traffic, readers)

        # The messages whose ack was lost, sent again, are stored once, whatever happened.
        await publish_again(server.url, sessions, traffic)
        await readers_whole(server.url, traffic, readers)
    finally:
        for reader in readers:
            await reader.close()
    assert_no_traceback(server)


async def test_a_server_killed_mid_publish_leaves_the_others_readers_whole(
    servers: ServerSet, cluster_database: str, redis_url: str
) -> None:
    settings = SETTINGS | {
        "STREAMCHAT_DATABASE_URL": cluster_database,
        "STREAMCHAT_BROKER_URL": redis_url,
        "STREAMCHAT_BROKER_NAMESPACE": f"test-kill-{uuid.uuid4().hex[:12]}",
    }
    a, b = servers.add("a", settings), servers.add("b", settings)
    await a.start()  # one at a time: the first migrates
    await b.start()
    sessions = {user: await login(a.url, user, f"publisher{user}") for user in PUBLISHERS}
    traffic = Traffic()
    # Publishers on A, readers on B: two stay, one leaves halfway and comes back.
    leaver, *staying = readers = [Reader() for _ in range(3)]
    try:
        for reader in readers:
            assert (await reader.subscribe(b.url)).seq == 0
        await publish_until_killed(a, sessions, traffic, before_kill=leaver)

        # Without reconnecting, B's readers get every message A stored, whether or not
        # A lived to broadcast it.
        await readers_whole(b.url, traffic, staying)

        # The lost acks' messages, sent again through B, are stored once.
        await publish_again(b.url, sessions, traffic)
        history = await readers_whole(b.url, traffic, staying)
        for reader in staying:
            assert reader.chat is not None
            assert not reader.chat.closed

        # The reader that left comes back to B with the last seq it saw.
        epoch = leaver.epoch
        again = await leaver.subscribe(b.url, resume=True)
        assert (again.recovered, again.epoch, again.seq) == (True, epoch, len(history))
        await leaver.seen_up_to(len(history))
        assert leaver.seen == history
    finally:
        for reader in readers:
            await reader.close()
    assert_no_traceback(b)
