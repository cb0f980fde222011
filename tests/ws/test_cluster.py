"""Two real server processes sharing PostgreSQL and a broker (Redis or NATS)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from streamchat.client import ChatClient, login, logout
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
