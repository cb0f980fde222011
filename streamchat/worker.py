"""``streamchat worker``: the singleton actors in a process of their own.

A worker serves no HTTP and holds no WebSocket. It talks to the servers only
through the database (streamers, chat history, leases) and the broker (room
events, actor commands), so it needs a broker that spans processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator

from prometheus_client import start_http_server

from streamchat.actors import Cluster, Node, broker_namespace, running_actors
from streamchat.config import Settings
from streamchat.errors import CannotStart
from streamchat.metrics import Metrics
from streamchat.pubsub import PubSub
from streamchat.store.database import Database, chat_store

__all__ = ["refuse_worker", "run_worker"]

log = logging.getLogger("streamchat.worker")


def refuse_worker(settings: Settings) -> str | None:
    """Why a worker cannot run with these settings, or ``None``."""
    if settings.broker_url.startswith("memory:"):
        return (
            "a worker reaches the servers through a broker, and memory:// lives inside one "
            "process: set STREAMCHAT_BROKER_URL (or --broker-url) to redis://, nats:// or "
            "postgresql://, the same as the servers'"
        )
    return None


async def run_worker(
    settings: Settings,
    stop: asyncio.Event | None = None,
    *,
    metrics: tuple[str, int] | None = None,
) -> None:
    """Run until ``stop`` is set, or SIGINT/SIGTERM; then stop the actors within their deadline.

    With ``metrics`` (host, port), serve Prometheus metrics there: the worker's actors,
    broker and database.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    node = Node.here("worker")
    async with contextlib.AsyncExitStack() as stack:
        db = Database(settings.database_url, statement_timeout=settings.db_statement_timeout)
        stack.push_async_callback(db.close)
        try:
            await db.migrate()
            pubsub = PubSub(
                broker=settings.broker_url,
                store=chat_store(settings),
                namespace=await broker_namespace(settings, db),
            )
            await pubsub.connect()
        except Exception as exc:
            raise CannotStart(f"cannot start: {type(exc).__name__}: {exc}") from exc
        stack.push_async_callback(pubsub.disconnect)
        cluster = await stack.enter_async_context(
            running_actors(settings, node, db, pubsub, singletons=True)
        )
        if metrics is not None:
            await stack.enter_async_context(_serving_metrics(metrics, cluster, pubsub, db))
        log.info("worker %s (pid %d) running; waiting for leadership", node.id, node.pid)
        await stop.wait()
        log.info("worker %s stopping", node.id)


@contextlib.asynccontextmanager
async def _serving_metrics(
    address: tuple[str, int], cluster: Cluster, pubsub: PubSub, db: Database
) -> AsyncIterator[None]:
    """Prometheus metrics on ``address`` (prometheus-client's own server, in a thread)."""
    metrics = Metrics()
    metrics.bind(cluster=cluster, pubsub=pubsub, db=db)
    host, port = address
    server, thread = start_http_server(port, addr=host, registry=metrics.registry)
    log.info("worker metrics on http://%s:%d/metrics", host, port)

    async def check_database() -> None:
        # The server thread reads what this loop last saw of the database.
        while True:
            await metrics.check_database()
            await asyncio.sleep(10)

    checker = asyncio.create_task(check_database(), name="worker-metrics-database")
    try:
        yield
    finally:
        checker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await checker
        server.shutdown()
        thread.join(timeout=5)
