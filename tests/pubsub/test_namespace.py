"""Deployments that share one broker server stay apart by namespace."""

from __future__ import annotations

import asyncio

import pytest

from streamchat.pubsub import PubSub

from .conftest import nothing_more


@pytest.fixture(params=["redis", "nats"])
def shared_broker(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


async def test_other_namespaces_are_not_heard(shared_broker: str) -> None:
    async with (
        PubSub(broker=shared_broker, namespace="deploy-a:") as a,
        PubSub(broker=shared_broker, namespace="deploy-a:") as a_too,
        PubSub(broker=shared_broker, namespace="deploy-b:") as b,
        a.subscribe("control:sessions-ended") as heard,
    ):
        await b.publish("control:sessions-ended", b"from b", store=False)
        await a_too.publish("control:sessions-ended", b"from a", store=False)
        async with asyncio.timeout(5):
            message = await anext(heard)
        assert message.payload == b"from a"
        await nothing_more(heard)
