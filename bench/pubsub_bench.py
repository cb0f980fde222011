"""Publish -> deliver throughput and latency of streamchat.pubsub, per broker x store.

    .venv/bin/python bench/pubsub_bench.py            # the figures in docs/pubsub.md
    .venv/bin/python bench/pubsub_bench.py --quick    # a few seconds, tiny numbers (smoke test)

One process, one channel: ``--publishers`` tasks publish ``--count`` messages of
``--size`` bytes, ``--subscribers`` local subscribers receive them all. Throughput is
messages / (first publish -> last delivery); latency is the time from a message being
stamped by the store to a subscriber having it. Each combination stops after
``--seconds``. Only loopback services are used; a service that is not reachable is
skipped. PostgreSQL combinations run in a scratch database that is dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamchat.pubsub import PubSub, Subscription

REDIS_URL = os.environ.get("STREAMCHAT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
NATS_URL = os.environ.get("STREAMCHAT_BENCH_NATS_URL", "nats://127.0.0.1:4222")
POSTGRES_URL = os.environ.get(
    "STREAMCHAT_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)

COMBOS = [
    ("memory", "memory"),
    ("memory", "sqlite"),
    ("memory", "postgres"),
    ("redis", "memory"),
    ("nats", "memory"),
    ("postgres", "memory"),
    ("redis", "sqlite"),
    ("redis", "postgres"),
    ("nats", "postgres"),
    ("postgres", "postgres"),
]


def percentiles(latencies: list[float]) -> str:
    if len(latencies) < 2:
        return "n/a"
    q = statistics.quantiles(latencies, n=100)
    return f"{q[49] * 1000:.2f} / {q[98] * 1000:.2f}"


def reachable(url: str, port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or port), 1):
            return True
    except OSError:
        return False


async def run_one(
    broker: str,
    store: str,
    *,
    count: int,
    subscribers: int,
    publishers: int,
    size: int,
    limit: float,
    rate: float | None = None,
) -> tuple[int, float, list[float]]:
    """Publish up to ``count`` messages within ``limit`` seconds; return what was measured.

    Without ``rate`` the publishers go flat out (throughput); with it, one message every
    ``1 / rate`` seconds overall (latency without queueing).
    """
    channel = f"bench:{uuid.uuid4().hex}"
    payload = os.urandom(size)
    latencies: list[float] = []
    published = 0
    last_delivery = [0.0]
    deadline = time.monotonic() + limit

    async def publisher(ps: PubSub, n: int) -> None:
        nonlocal published
        for _ in range(n):
            if time.monotonic() > deadline:
                return
            await ps.publish(channel, payload)
            published += 1
            if rate:
                await asyncio.sleep(publishers / rate)

    async def consumer(sub: Subscription, done: asyncio.Event) -> int:
        got = 0
        while not (done.is_set() and got >= published):
            try:
                # Short waits, so a consumer that already has everything sees `done`.
                async with asyncio.timeout(0.1):
                    message = await anext(sub)
            except TimeoutError:
                if time.monotonic() > deadline + 10:
                    break  # bounded: reported as lost messages below
                continue
            latencies.append(time.time() - message.time)
            got += 1
            last_delivery[0] = time.monotonic()
        return got

    async with (
        PubSub(broker=broker, store=store, queue_size=count + 1) as ps,
        AsyncExitStack() as stack,
    ):
        subs = [await stack.enter_async_context(ps.subscribe(channel)) for _ in range(subscribers)]
        done = asyncio.Event()
        started = time.monotonic()
        consumers = [asyncio.create_task(consumer(sub, done)) for sub in subs]
        shares = [count // publishers + (i < count % publishers) for i in range(publishers)]
        await asyncio.gather(*(publisher(ps, n) for n in shares))
        done.set()
        received = await asyncio.gather(*consumers)
        elapsed = last_delivery[0] - started
    if min(received) < published:
        raise RuntimeError(f"lost messages: published {published}, received {received}")
    return published, elapsed, latencies


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny numbers, a few seconds")
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--subscribers", type=int, default=4)
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0, help="per combination and phase")
    parser.add_argument("--rate", type=float, default=200.0, help="paced phase: msgs/s")
    parser.add_argument("--paced-count", type=int, default=400, help="paced phase: messages")
    parser.add_argument("--only", help="comma-separated combos, e.g. memory-memory,redis-postgres")
    args = parser.parse_args()
    if args.quick:
        args.count, args.subscribers, args.publishers, args.seconds = 100, 2, 2, 2.0
        args.paced_count, args.rate = 20, 1000.0

    combos = COMBOS
    if args.only:
        wanted = set(args.only.split(","))
        combos = [c for c in COMBOS if f"{c[0]}-{c[1]}" in wanted]

    available = {
        "memory": True,
        "sqlite": True,
        "redis": reachable(REDIS_URL, 6379),
        "nats": reachable(NATS_URL, 4222),
        "postgres": reachable(POSTGRES_URL, 5432),
    }
    database = None
    if available["postgres"] and any("postgres" in c for c in combos):
        database = await create_database()

    print(
        f"# {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; count={args.count} subscribers={args.subscribers} "
        f"publishers={args.publishers} size={args.size}B paced={args.paced_count}"
    )
    print(
        "| broker | store | flat out: delivered msgs/s | flat out: p50 / p99 ms "
        f"| at {args.rate:g} msgs/s: p50 / p99 ms |"
    )
    print("|---|---|---:|---:|---:|")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for broker_kind, store_kind in combos:
                if not (available[broker_kind] and available[store_kind]):
                    print(f"| {broker_kind} | {store_kind} | skipped: service unreachable | | |")
                    continue
                broker = {
                    "memory": "memory://bench",
                    "redis": REDIS_URL,
                    "nats": NATS_URL,
                    "postgres": database or "",
                }[broker_kind]
                store = {
                    "memory": "memory://",
                    "sqlite": f"sqlite+aiosqlite:///{tmp}/bench-{uuid.uuid4().hex[:6]}.db",
                    "postgres": (database or "").replace("postgresql://", "postgresql+asyncpg://"),
                }[store_kind]
                options = {
                    "subscribers": args.subscribers,
                    "publishers": args.publishers,
                    "size": args.size,
                    "limit": args.seconds,
                }
                published, elapsed, burst = await run_one(
                    broker, store, count=args.count, **options
                )
                _, _, paced = await run_one(
                    broker, store, count=args.paced_count, rate=args.rate, **options
                )
                print(
                    f"| {broker_kind} | {store_kind} | {published / elapsed:,.0f} "
                    f"| {percentiles(burst)} | {percentiles(paced)} |",
                    flush=True,
                )
    finally:
        if database is not None:
            await drop_database(database)


async def create_database() -> str:
    import asyncpg

    name = f"streamchat_bench_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return urlsplit(POSTGRES_URL)._replace(path=f"/{name}").geturl()


async def drop_database(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{urlsplit(url).path[1:]}" WITH (FORCE)')
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
