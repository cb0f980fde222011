"""Two real server processes sharing PostgreSQL and a broker (Redis or NATS)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from streamchat.client import ChatClient, login, logout
from streamchat.protocol import Join, PresenceReply
from tests.helpers import messages

ROOM = "sablesignal"


@dataclass
class Node:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
def cluster(cluster_database: str, broker_url: str, tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    nodes: list[Node] = []
    env = {
        **os.environ,
        "STREAMCHAT_DATABASE_URL": cluster_database,
        "STREAMCHAT_BROKER_URL": broker_url,
        "STREAMCHAT_LOG_LEVEL": "warning",
        "STREAMCHAT_RUN_SINGLETONS": "false",
    }
    try:
        for i in range(2):
            port = _free_port()
            log = tmp_path / f"node{i}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "streamchat", "serve", "--port", str(port)],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            nodes.append(Node(f"http://127.0.0.1:{port}", process, log))
            # One at a time: the first migrates, the second finds nothing to do.
            _wait_ready(nodes[-1])
        yield nodes[0], nodes[1]
    finally:
        for node in nodes:
            node.process.send_signal(signal.SIGINT)
        for node in nodes:
            try:
                node.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait()
        for node in nodes:
            assert "Traceback" not in node.log.read_text(errors="replace"), node.log.read_text()


def _wait_ready(node: Node, wait: float = 30.0) -> None:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if node.process.poll() is not None:
            raise RuntimeError(f"server exited: {node.log.read_text()}")
        try:
            if httpx.get(f"{node.url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server not ready: {node.log.read_text()}")


async def _presence_reaches(chat: ChatClient, count: int) -> PresenceReply:
    for _ in range(100):
        presence = await chat.presence(ROOM)
        if presence.count == count:
            return presence
        await asyncio.sleep(0.1)
    raise AssertionError(f"presence never reached {count}: {presence}")


async def test_messages_cross_processes_and_resume_anywhere(cluster: tuple[Node, Node]) -> None:
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


async def test_presence_and_joins_span_processes(cluster: tuple[Node, Node]) -> None:
    one, two = cluster
    alice = await login(one.url, "1001", "alice")
    bob = await login(two.url, "1002", "bob")
    async with ChatClient.connect(one.url, alice) as a:
        await a.subscribe(ROOM)
        async with ChatClient.connect(two.url, bob) as b:
            await b.subscribe(ROOM)
            # Bob's arrival on process two is announced on process one.
            async with asyncio.timeout(10):
                while True:
                    event = await a.next_event(10)
                    if isinstance(event, Join) and event.user.id == "1002":
                        break
            # Presence counts both processes (each writes its rows within a second).
            for chat in (a, b):
                presence = await _presence_reaches(chat, 2)
                assert sorted(u.id for u in presence.users) == ["1001", "1002"]
        await _presence_reaches(a, 1)


async def test_logout_on_one_process_closes_sockets_on_the_other(
    cluster: tuple[Node, Node],
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
