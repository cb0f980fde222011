"""Building a PubSub from URLs, and misuse."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from streamchat.pubsub import ConfigurationError, LinkState, PubSub, PubSubError
from streamchat.pubsub.backends.brokers.memory import MemoryBroker
from streamchat.pubsub.backends.stores.memory import MemoryStore
from streamchat.pubsub.backends.stores.sql import SQLStore

from .conftest import receive


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"broker": "kafka://localhost"}, "unknown broker scheme 'kafka'.*expected one of"),
        ({"broker": "localhost:6379"}, "broker URL must look like"),
        ({"store": "mongodb://localhost"}, "unknown store scheme 'mongodb'"),
        ({"store": "sqlite+nosuchdriver:///x.db"}, "cannot build a store"),
        ({"store": "memory://?max_messages=zero"}, "max_messages must be an integer"),
        ({"store": "memory://?max_messages=0"}, "max_messages must be at least 1"),
        ({"store": "sqlite:///x.db?table_prefix=bad-name"}, "table_prefix"),
        ({"broker": "redis://localhost:notaport"}, "invalid Redis URL"),
        ({"broker": "nats://localhost?ping_interval=-1"}, "ping_interval must be positive"),
    ],
)
def test_bad_urls_raise_a_clear_configuration_error(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match) as caught:
        PubSub(**kwargs)
    assert isinstance(caught.value, PubSubError)


def test_passwords_stay_out_of_error_messages() -> None:
    with pytest.raises(ConfigurationError) as caught:
        PubSub(broker="amqp://user:s3cret@localhost")
    assert "s3cret" not in str(caught.value)


def test_urls_pick_backends_and_options(tmp_path: Path) -> None:
    ps = PubSub(broker="memory://a", store="memory://?max_messages=7")
    assert isinstance(ps.broker, MemoryBroker)
    assert ps.broker.name == "a"
    assert isinstance(ps.store, MemoryStore)
    assert ps.store.max_messages == 7
    sql = PubSub(store=f"sqlite:///{tmp_path}/x.db?table_prefix=chat_&max_messages=9").store
    assert isinstance(sql, SQLStore)
    assert (sql.table_prefix, sql.max_messages) == ("chat_", 9)
    assert sql.messages.name == "chat_messages"
    assert sql.engine.url.drivername == "sqlite+aiosqlite"


async def test_misuse_raises_precise_errors() -> None:
    ps = PubSub()
    assert ps.health.state is LinkState.DISCONNECTED
    with pytest.raises(RuntimeError, match="not connected"):
        await ps.publish("c", b"x")
    with pytest.raises(RuntimeError, match="not connected"):
        async with ps.subscribe("c"):
            pass
    async with ps:
        assert ps.health.connected
        with pytest.raises(RuntimeError, match="already connected"):
            await ps.connect()
        with pytest.raises(TypeError, match="payload must be bytes"):
            await ps.publish("c", "text")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="channel"):
            await ps.publish("", b"x")
        with pytest.raises(ValueError, match="since"):
            async with ps.subscribe("c", since=("epoch", -1)):
                pass
    assert ps.health.state is LinkState.DISCONNECTED


async def test_disconnect_ends_open_subscriptions() -> None:
    ps = PubSub()
    await ps.connect()
    async with ps.subscribe("c") as sub:
        await ps.publish("c", b"one")
        assert len(await receive(sub, 1)) == 1
        await ps.disconnect()
        assert sub.closed
        async with asyncio.timeout(1):
            assert [m async for m in sub] == []
