"""The broker x store combinations the contract suite runs against, and helpers."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from streamchat.pubsub import Message, PubSub, Subscription

ROOT = Path(__file__).resolve().parents[2]

# Every broker with the SQL store on PostgreSQL, plus the in-process and SQLite setups.
COMBOS = [
    ("memory", "memory"),
    ("memory", "sqlite"),
    ("redis", "sqlite"),
    ("redis", "postgres"),
    ("nats", "postgres"),
    ("postgres", "postgres"),
]
COMBO_IDS = [f"{b}-{s}" for b, s in COMBOS]
# Where another process can publish to us: a real broker and a store shared between processes.
CROSS_PROCESS = [c for c in COMBOS if "memory" not in c]
cross_process = pytest.mark.parametrize(
    "combo", CROSS_PROCESS, ids=[f"{b}-{s}" for b, s in CROSS_PROCESS], indirect=True
)


@dataclass
class Combo:
    broker_kind: str
    store_kind: str
    broker_url: str
    store_url: str


def broker_url(request: pytest.FixtureRequest, kind: str) -> str:
    if kind == "memory":
        return f"memory://{uuid.uuid4().hex}"
    if kind == "redis":
        return str(request.getfixturevalue("redis_url"))
    if kind == "nats":
        return str(request.getfixturevalue("nats_url"))
    return str(request.getfixturevalue("postgres_database"))


def store_url(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> str:
    if kind == "memory":
        return "memory://"
    # Tables of their own per test: truncating them in one test touches no other.
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'pubsub.db'}?table_prefix={prefix}"
    base = str(request.getfixturevalue("postgres_database"))
    return base.replace("postgresql://", "postgresql+asyncpg://", 1) + f"?table_prefix={prefix}"


@pytest.fixture(params=COMBOS, ids=COMBO_IDS)
def combo(request: pytest.FixtureRequest, tmp_path: Path) -> Combo:
    broker_kind, store_kind = request.param
    return Combo(
        broker_kind,
        store_kind,
        broker_url(request, broker_kind),
        store_url(request, store_kind, tmp_path),
    )


MakePubSub = Callable[..., Awaitable[PubSub]]


@pytest.fixture
async def make_pubsub(combo: Combo) -> AsyncIterator[MakePubSub]:
    """Connected PubSubs on the combo's URLs (or overrides), disconnected at teardown."""
    made: list[PubSub] = []

    async def make(**kwargs: Any) -> PubSub:
        kwargs.setdefault("broker", combo.broker_url)
        kwargs.setdefault("store", combo.store_url)
        # No sweep unless a test asks: it would paper over a bug in the other paths.
        kwargs.setdefault("sweep_interval", None)
        ps = PubSub(**kwargs)
        await ps.connect()
        made.append(ps)
        return ps

    yield make
    for ps in reversed(made):
        await ps.disconnect()


@pytest.fixture
async def ps(make_pubsub: MakePubSub) -> PubSub:
    return await make_pubsub()


@pytest.fixture
def channel() -> str:
    return f"room:{uuid.uuid4().hex}"


async def receive(sub: Subscription, count: int, within: float = 10.0) -> list[Message]:
    """The next ``count`` messages of ``sub``, failing after ``within`` seconds."""
    received: list[Message] = []
    async with asyncio.timeout(within):
        while len(received) < count:
            received.append(await anext(sub))
    return received


async def until(condition: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    """Poll ``condition`` until it holds, failing after ``within`` seconds."""
    async with asyncio.timeout(within):
        for _ in itertools.count():
            if await condition():
                return
            await asyncio.sleep(0.01)


async def nothing_more(sub: Subscription, wait: float = 0.3) -> None:
    """Assert that no message arrives within ``wait`` seconds."""
    try:
        async with asyncio.timeout(wait):
            extra = await anext(sub)
    except TimeoutError:
        return
    raise AssertionError(f"unexpected message {extra}")


async def run_publisher(
    combo: Combo, channel: str, count: int, tag: str, pause: float = 0.0
) -> asyncio.subprocess.Process:
    """Start ``_publisher.py`` in another Python process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).with_name("_publisher.py")),
        combo.broker_url,
        combo.store_url,
        channel,
        str(count),
        tag,
        str(pause),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def finish(process: asyncio.subprocess.Process, within: float = 30.0) -> None:
    async with asyncio.timeout(within):
        _, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
