"""Two real server processes sharing PostgreSQL and a broker (Redis or NATS)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from streamchat.client import ChatClient, ChatError, login, logout
from streamchat.protocol import Join, Leave
from tests.helpers import messages
from tests.ws._process import ServerProcess, ServerSet

ROOM = "sablesignal"
#: Two servers on one database and one broker.
Cluster = tuple[ServerProcess, ServerProcess]


@pytest.fixture
async def cluster_database(postgres_database: str) -> AsyncIterator[str]:
    name = f"streamchat_cluster_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(postgres_database)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = postgres_database.rsplit("/", 1)[0] + f"/{name}"
        yield url.replace("postgresql://", "postgresql+asyncpg://", 1)
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(params=["redis", "nats"])
def broker_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
async def cluster(cluster_database: str, broker_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    settings = {
        "STREAMCHAT_DATABASE_URL": cluster_database,
        "STREAMCHAT_BROKER_URL": broker_url,
        "STREAMCHAT_LOG_LEVEL": "warning",
        "STREAMCHAT_RUN_SINGLETONS": "false",
    }
    with ServerSet(tmp_path) as servers:
        one, two = servers.add("node0", settings), servers.add("node1", settings)
        # One at a time: the first migrates, the second finds nothing to do.
        await one.start()
        await two.start()
        yield one, two
    for node in (one, two):
        assert "Traceback" not in node.log(), node.log()


async def test_messages_cross_processes_and_resume_anywhere(cluster: Cluster) -> None:
    one, two = cluster
    alice = await login(one.url, "1001", "alice")
    bob = await login(two.url, "1002", "bob")
    async with ChatClient.connect(one.url, alice) as a, ChatClient.connect(two.url, bob) as b:
        subscribed = await a.subscribe(ROOM)
        await b.subscribe(ROOM)
        acks = [await b.publish(ROOM, f"from two {i}") for i in range(3)]
        acks.append(await a.publish(ROOM, "from one"))
        assert [ack.seq for ack in acks] == [1, 2, 3, 4]
        for chat in (a, b):
            received = await messages(chat, 4)
            assert [m.seq for m in received] == [1, 2, 3, 4]
            assert [m.text for m in received][-1] == "from one"

    # Missed messages are recovered from whichever process the client returns to.
    async with ChatClient.connect(two.url, bob) as b:
        for i in range(3):
            await b.publish(ROOM, f"missed {i}")
    async with ChatClient.connect(two.url, alice) as a:
        again = await a.subscribe(ROOM, since=4, epoch=subscribed.epoch)
        assert again.recovered is True
        assert [m.text for m in await messages(a, 3)] == [f"missed {i}" for i in range(3)]
        history = await a.history(ROOM)
        assert [m.seq for m in history] == list(range(1, 8))


async def test_presence_and_joins_span_processes(cluster: Cluster) -> None:
    one, two = cluster
    alice = await login(one.url, "1001", "alice")
    bob = await login(two.url, "1002", "bob")
    async with ChatClient.connect(one.url, alice) as a:
        await a.subscribe(ROOM)
        async with ChatClient.connect(two.url, bob) as b:
            await b.subscribe(ROOM)
            # Bob's arrival on process two is announced on process one, and only once
            # it is stored: asked right after the join, process one already counts him.
            async with asyncio.timeout(10):
                while True:
                    event = await a.next_event(10)
                    if isinstance(event, Join) and event.user.id == "1002":
                        break
            for chat in (a, b):
                presence = await chat.presence(ROOM)
                assert sorted(u.id for u in presence.users) == ["1001", "1002"]
        # Bob's leave, likewise: once announced, he is gone everywhere.
        async with asyncio.timeout(10):
            while True:
                event = await a.next_event(10)
                if isinstance(event, Leave) and event.user.id == "1002":
                    break
        presence = await a.presence(ROOM)
        assert [u.id for u in presence.users] == ["1001"]


async def test_logout_on_one_process_closes_sockets_on_the_other(
    cluster: Cluster,
) -> None:
    one, two = cluster
    session = await login(one.url, "1001", "alice")
    async with ChatClient.connect(one.url, session) as a, ChatClient.connect(two.url, session) as b:
        await a.subscribe(ROOM)
        await b.subscribe(ROOM)
        await logout(two.url, session)
        for chat in (a, b):
            async with asyncio.timeout(10):
                await chat.wait_closed()
            assert chat.close_code == 4001


async def broadcaster_of(url: str, room: str) -> str:
    """A session of the room's broadcaster (the user whose ID is the streamer's)."""
    async with httpx.AsyncClient(base_url=url) as http:
        streamer_id = (await http.get(f"/api/streamers/{room}")).json()["id"]
    return await login(url, streamer_id, room)


async def test_a_ban_on_one_process_holds_on_the_other_within_a_second(
    cluster: Cluster,
) -> None:
    one, two = cluster
    host = await broadcaster_of(one.url, ROOM)
    vic = await login(two.url, "3001", "vic")
    async with ChatClient.connect(one.url, host) as h, ChatClient.connect(two.url, vic) as v:
        await v.publish(ROOM, "before")  # process two has read the room's rules
        await h.moderate(ROOM, "ban", user="vic")
        banned_at = time.monotonic()
        assert await publish_until(v, refused=True) == "banned"
        assert time.monotonic() - banned_at < 1.0, "process two let a banned user post"
        await h.moderate(ROOM, "unban", user="vic")
        unbanned_at = time.monotonic()
        assert await publish_until(v, refused=False) is None
        assert time.monotonic() - unbanned_at < 1.0, "the unban did not reach process two"


async def publish_until(chat: ChatClient, *, refused: bool) -> str | None:
    """Publish until the server refuses (``refused``) or accepts; the refusal's code."""
    for _ in range(200):
        code: str | None = None
        try:
            await chat.publish(ROOM, "am I banned?")
        except ChatError as exc:
            code = exc.code
        if (code is not None) == refused:
            return code
        await asyncio.sleep(0.005)
    raise AssertionError("the ban or unban never took effect")


async def test_the_rate_limit_counts_every_process(cluster: Cluster) -> None:
    one, two = cluster
    vic = await login(one.url, "3001", "vic")
    async with ChatClient.connect(one.url, vic) as a, ChatClient.connect(two.url, vic) as b:
        results = await asyncio.gather(
            *(chat.publish(ROOM, f"{i}") for i in range(15) for chat in (a, b)),
            return_exceptions=True,
        )
    accepted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, ChatError)]
    assert len(accepted) == 20
    assert len(refused) == 10
    assert {r.code for r in refused} == {"rate_limited"}


async def test_recovering_on_the_other_process_across_a_deletion(cluster: Cluster) -> None:
    one, two = cluster
    host = await broadcaster_of(one.url, ROOM)
    vic = await login(two.url, "3001", "vic")
    async with ChatClient.connect(two.url, vic) as v:
        sub = await v.subscribe(ROOM)
        for i in range(4):
            await v.publish(ROOM, f"m{i}")
        await messages(v, 4)
    async with ChatClient.connect(one.url, host) as h:
        await h.moderate(ROOM, "delete", seq=3)
    async with ChatClient.connect(one.url, vic) as v:
        again = await v.subscribe(ROOM, since=1, epoch=sub.epoch)
        assert again.recovered
        replayed = await messages(v, 3)
        assert [(m.seq, m.deleted) for m in replayed] == [(2, False), (3, True), (4, False)]
