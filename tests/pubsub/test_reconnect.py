"""A broker link that breaks is detected, re-established and loses no stored message."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from streamchat.pubsub import LinkState, PubSub
from streamchat.pubsub.backends.brokers.memory import MemoryBroker
from tests.helpers import wait_for

from ._proxy import TcpProxy
from .conftest import Combo, MakePubSub, nothing_more, receive, until


@pytest.fixture
async def proxy_factory() -> AsyncIterator[list[TcpProxy]]:
    proxies: list[TcpProxy] = []
    yield proxies
    for proxy in proxies:
        await proxy.close()


async def _proxied(url: str, proxies: list[TcpProxy]) -> tuple[str, TcpProxy]:
    parts = urlsplit(url)
    proxy = await TcpProxy(parts.hostname or "127.0.0.1", parts.port or 0).start()
    proxies.append(proxy)
    return parts._replace(netloc=f"127.0.0.1:{proxy.port}").geturl(), proxy


def _state(ps: PubSub, state: LinkState) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return ps.health.state is state

    return check


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def test_killed_broker_connection_loses_nothing(
    combo: Combo,
    make_pubsub: MakePubSub,
    channel: str,
    proxy_factory: list[TcpProxy],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="streamchat.pubsub")
    broker_url = combo.broker_url
    proxy: TcpProxy | None = None
    app = f"pstest-{uuid.uuid4().hex[:12]}"
    if combo.broker_kind == "nats":
        # NATS has no admin command to drop one client: cut it at the TCP level instead.
        broker_url, proxy = await _proxied(broker_url, proxy_factory)
    elif combo.broker_kind == "postgres":
        broker_url = f"{broker_url}?application_name={app}"
    ps = await make_pubsub(broker=broker_url, sweep_interval=None)

    async def kill() -> None:
        if combo.broker_kind == "memory":
            assert isinstance(ps.broker, MemoryBroker)
            ps.broker.sever()
        elif combo.broker_kind == "redis":
            from redis.asyncio import Redis

            admin = Redis.from_url(combo.broker_url)
            try:
                assert await admin.client_kill_filter(_type="pubsub") >= 1
            finally:
                await admin.aclose()
        elif combo.broker_kind == "postgres":
            import asyncpg

            conn = await asyncpg.connect(combo.broker_url)
            try:
                killed = await conn.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = $1",
                    f"{app}/listen",
                )
            finally:
                await conn.close()
            assert killed == 1
        else:
            assert proxy is not None
            await proxy.sever()

    total = 120
    async with ps.subscribe(channel) as sub:

        async def publisher() -> None:
            for i in range(total):
                await ps.publish(channel, b"%d" % i)
                await asyncio.sleep(0.002)

        task = asyncio.create_task(publisher())
        first = await receive(sub, 20)
        await kill()
        rest = await receive(sub, total - 20, within=15)
        await task
    assert [m.seq for m in first + rest] == list(range(1, total + 1))
    assert ps.health.state is LinkState.CONNECTED
    assert ps.health.reconnects >= 1
    assert ps.health.last_error
    assert "broker link lost" in caplog.text


async def test_health_shows_an_outage_and_publishes_meanwhile_are_recovered(
    redis_url: str, channel: str, proxy_factory: list[TcpProxy]
) -> None:
    url, proxy = await _proxied(redis_url, proxy_factory)
    async with PubSub(
        broker=url, store="memory://", reconnect_backoff=(0.02, 0.1), sweep_interval=None
    ) as ps:
        assert ps.health.state is LinkState.CONNECTED
        async with ps.subscribe(channel) as sub:
            await ps.publish(channel, b"before")
            assert [m.seq for m in await receive(sub, 1)] == [1]
            proxy.refusing = True
            await proxy.sever()
            await until(_state(ps, LinkState.RECONNECTING), within=5)
            down = ps.health
            assert down.last_error
            assert down.since > 0
            # Publishing still succeeds once stored, even with the broadcast failing.
            during = [await ps.publish(channel, b"during %d" % i) for i in range(3)]
            assert [m.seq for m in during] == [2, 3, 4]
            # ... and the subscribers of this process get them without the broker.
            assert await receive(sub, 3, within=2) == during
            # It tries again and again, and is not fooled into reporting itself connected.
            await wait_for(lambda: proxy.refused >= 3)
            assert not ps.health.connected
            assert not ps.health.ok
            proxy.refusing = False
            await until(_state(ps, LinkState.CONNECTED), within=10)
            up = ps.health
            assert up.reconnects == 1
            assert up.ok
            # The recovery after the reconnect found them delivered: no duplicate.
            await nothing_more(sub)
            await ps.publish(channel, b"after")
            assert [m.seq for m in await receive(sub, 1)] == [5]
    assert ps.health.state.value == "disconnected"


async def test_a_silent_broker_holds_up_neither_the_publisher_nor_local_delivery(
    redis_url: str, channel: str, proxy_factory: list[TcpProxy], tmp_path: Path
) -> None:
    """The broker accepts connections and then answers nothing, as a hung server does."""
    url, proxy = await _proxied(redis_url, proxy_factory)
    store = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    here = PubSub(broker=f"{url}?ping_interval=0.3", store=store, broadcast_timeout=0.5)
    # Another process on the same store, whose own broker link is fine.
    there = PubSub(broker=redis_url, store=store, sweep_interval=0.5)
    async with here, there, here.subscribe(channel) as near, there.subscribe(channel) as far:
        first = await here.publish(channel, b"before")
        assert await receive(near, 1) == [first]
        assert await receive(far, 1) == [first]

        proxy.silent = True
        began = time.monotonic()
        during = [await here.publish(channel, b"during %d" % i) for i in range(10)]
        # The first broadcast waits out its timeout; the others skip the hung broker.
        assert time.monotonic() - began < 0.5 + 1.5
        assert await receive(near, 10, within=1) == during
        assert not here.health.publishing
        # The other process's sweep finds them in the store.
        assert [m.seq for m in await receive(far, 10)] == [m.seq for m in during]

        proxy.silent = False
        await proxy.sever()
        await until(lambda: _true(here.health.ok), within=10)
        last = await here.publish(channel, b"after")
        assert await receive(near, 1) == [last]
        assert await receive(far, 1) == [last]
        await nothing_more(near)
        await nothing_more(far)


async def _true(value: bool) -> bool:
    return value


async def test_redis_channel_subscribed_once_and_released(redis_url: str, channel: str) -> None:
    from redis.asyncio import Redis

    admin = Redis.from_url(redis_url)

    async def numsub() -> int:
        [(_, count)] = await admin.pubsub_numsub(channel)
        return int(count)

    try:
        async with PubSub(broker=redis_url, store="memory://") as ps:
            async with (
                ps.subscribe(channel),
                ps.subscribe(channel),
                ps.subscribe(channel) as third,
            ):
                assert await numsub() == 1
                await ps.publish(channel, b"x")
                assert len(await receive(third, 1)) == 1
            await until(lambda: _equals(numsub(), 0), within=5)
    finally:
        await admin.aclose()
