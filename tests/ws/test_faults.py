"""Faults on the real services: the broker goes away, and everything comes back by itself."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest

from streamchat.client import ChatClient, ChatError
from tests.helpers import messages, no_more_messages, wait_for
from tests.pubsub._proxy import TcpProxy
from tests.ws.conftest import ROOM, ServerFactory
from tests.ws.test_cluster import cluster_database

__all__ = ["cluster_database"]

#: How long Redis stays unreachable (the issue's figure; lower it for a quick local run).
OUTAGE = float(os.environ.get("STREAMCHAT_TEST_OUTAGE_SECONDS", "20"))


@pytest.fixture
async def redis_proxy(redis_url: str) -> AsyncIterator[TcpProxy]:
    parts = urlsplit(redis_url)
    proxy = await TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379).start()
    try:
        yield proxy
    finally:
        await proxy.close()


async def _ready_again(http: httpx.AsyncClient) -> None:
    """Wait (30 s at most) until the server's /readyz answers 200."""

    async def ready() -> bool:
        return (await http.get("/readyz")).status_code == 200

    await wait_for(ready, within=30, interval=0.2, what="/readyz 200")


@contextlib.asynccontextmanager
async def _writer_and_reader(
    server_factory: ServerFactory, broker: str
) -> AsyncIterator[tuple[ChatClient, ChatClient, httpx.AsyncClient]]:
    """A server on ``broker``: a logged-in writer, a reader subscribed to ROOM, and HTTP."""
    async with server_factory(broker_url=broker, rate_limit=False) as server:
        token = await server.login("1001", "alice")
        async with (
            server.connect(token) as writer,
            server.connect() as reader,
            httpx.AsyncClient(base_url=server.url) as http,
        ):
            await reader.subscribe(ROOM)
            yield writer, reader, http


async def test_redis_unreachable_then_back_loses_no_acked_message(
    server_factory: ServerFactory, redis_proxy: TcpProxy
) -> None:
    broker = f"redis://127.0.0.1:{redis_proxy.port}/0"
    async with _writer_and_reader(server_factory, broker) as (writer, reader, http):
        acked = [(await writer.publish(ROOM, "before")).seq]

        redis_proxy.refusing = True
        await redis_proxy.sever()
        began = time.monotonic()
        broker_down = False
        while time.monotonic() - began < OUTAGE:
            # Publishing goes on: every ack is a stored message (never a false one).
            acked.append((await writer.publish(ROOM, f"during {len(acked)}")).seq)
            ready = await http.get("/readyz")
            if ready.status_code == 503:
                assert ready.json()["checks"]["broker"] != "ok"
                broker_down = True
            await asyncio.sleep(0.5)
        assert broker_down, "/readyz never reported the broker outage"

        redis_proxy.refusing = False
        await _ready_again(http)
        acked.append((await writer.publish(ROOM, "after")).seq)

        # The reader gets every acked message, once, in order: nothing lost in the outage.
        received = [m.seq for m in await messages(reader, len(acked), within=30)]
        assert received == acked
        assert await no_more_messages(reader) == []
        assert acked == list(range(acked[0], acked[0] + len(acked)))


async def test_postgresql_refusing_connections_then_back(
    server_factory: ServerFactory, cluster_database: str
) -> None:
    parts = urlsplit(cluster_database.replace("+asyncpg", ""))
    proxy = await TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432).start()
    through_proxy = cluster_database.replace(f":{parts.port}/", f":{proxy.port}/")
    try:
        async with server_factory(database_url=through_proxy, db_statement_timeout=2.0) as server:
            token = await server.login("1001", "alice")
            async with (
                server.connect(token) as chat,
                httpx.AsyncClient(base_url=server.url) as http,
            ):
                await chat.subscribe(ROOM)
                first = await chat.publish(ROOM, "before")
                proxy.refusing = True
                await proxy.sever()
                for i in range(25):
                    with pytest.raises(ChatError) as failed:  # never a false ack
                        await chat.publish(ROOM, "during", nonce="n-during")
                    assert failed.value.code == "unavailable"
                    assert not chat.closed, f"disconnected for the server's fault after {i}"
                assert (await http.get("/readyz")).status_code == 503
                assert (await http.get("/api/streamers")).status_code == 503
                proxy.refusing = False
                await _ready_again(http)
                again = await chat.publish(ROOM, "during", nonce="n-during")
                assert again.seq == first.seq + 1
    finally:
        await proxy.close()


async def test_a_silent_redis_holds_up_neither_acks_nor_delivery_in_the_process(
    server_factory: ServerFactory, redis_proxy: TcpProxy
) -> None:
    """Redis accepts connections and answers nothing, as a hung server does."""
    broker = f"redis://127.0.0.1:{redis_proxy.port}/0?ping_interval=0.5"
    async with _writer_and_reader(server_factory, broker) as (writer, reader, http):
        acked = [(await writer.publish(ROOM, "before")).seq]

        redis_proxy.silent = True
        received: list[int] = []
        for i in range(20):
            async with asyncio.timeout(2):  # at most one broadcast waits its timeout
                acked.append((await writer.publish(ROOM, f"during {i}")).seq)
            # The reader on this process gets each message while the broker hangs.
            received += [m.seq for m in await messages(reader, len(acked) - len(received), 2)]
        ready = await http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["broker"] in {"not_publishing", "reconnecting"}

        redis_proxy.silent = False
        await redis_proxy.sever()
        await _ready_again(http)
        acked.append((await writer.publish(ROOM, "after")).seq)
        received += [m.seq for m in await messages(reader, 1)]
        assert received == acked
        # The broker's late copies and the recovery after the reconnect add nothing.
        assert await no_more_messages(reader) == []
        assert acked == list(range(acked[0], acked[0] + len(acked)))
