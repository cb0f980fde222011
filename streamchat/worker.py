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

from streamchat.actors import Node, running_actors
from streamchat.config import Settings
from streamchat.pubsub import PubSub
from streamchat.store.database import Database

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


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set, or SIGINT/SIGTERM; then stop the actors within their deadline."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    node = Node.here("worker")
    async with contextlib.AsyncExitStack() as stack:
        db = Database(settings.database_url)
        stack.push_async_callback(db.close)
        await db.migrate()
        pubsub = PubSub(broker=settings.broker_url, store=settings.chat_store_url)
        await pubsub.connect()
        stack.push_async_callback(pubsub.disconnect)
        await stack.enter_async_context(running_actors(settings, node, db, pubsub, singletons=True))
        log.info("worker %s (pid %d) running; waiting for leadership", node.id, node.pid)
        await stop.wait()
        log.info("worker %s stopping", node.id)
